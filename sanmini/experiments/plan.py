"""Every configuration of the sweep: the comparison of Zhao et al.'s main table and their ablations,
at the width of a laptop.

An :class:`Entry` names an experiment, a variant of it and the network trained for it. Entries
with the same :class:`Config` (an ablation's default variant is the comparison's SAN10 pairwise)
are trained once per seed and recorded under each entry.

The networks (``sanmini.create`` with these overrides, 10 classes):

- SAN10 pairwise and patchwise: a stem of 16 channels, weights shared over 4 channels, 3 x 3
  footprints in every stage (a 7 x 7 footprint, the paper's from the second stage on, needs
  inputs of at least 128 pixels with reflection padding), the paper's relations (subtraction with
  position encoding; concatenation), Numba's CPU kernels;
- ResNet26 with a stem of 14 channels: matched in parameters, the width whose count is closest to
  SAN10 pairwise's (568,592 against 544,144 and, patchwise, 584,174); its multiply-adds at
  64 x 64 are then 9% and 13% more than the SANs' (both counts are recorded).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

# Every override spelled out, so that a variant equal to the default is the same Config.
SAN = {"width": 16, "share_planes": 4, "kernels": (3, 3, 3, 3, 3), "gamma_layers": 2, "backend": "cpu"}
DEFAULTS = {"san10_pairwise": {**SAN, "relation": "subtraction", "position_encoding": True, "share": "none"},
            "san10_patchwise": {**SAN, "relation": "concatenation"},
            "resnet26": {"width": 14}}
VIEWED = ("comparison", "position_encoding")   # measured on rotated and flipped digits too
ATTACKS = {
    "images": 100,                                  # correctly classified by all three networks of a seed
    "eps": (0.01, 0.02, 0.05, 0.1),                 # L-infinity budgets, pixels in [0, 1]
    "pgd_steps": 10,                                # step size 2.5 * eps / steps, random start
}


@dataclass(frozen=True)
class Config:
    """A network: the ``sanmini.create`` name and its overrides."""
    model: str
    overrides: tuple = ()            # sorted (key, value) pairs, hashable

    @classmethod
    def of(cls, model: str, **overrides) -> "Config":
        unknown = set(overrides) - set(DEFAULTS[model])
        if unknown:
            raise ValueError(f"unknown overrides {sorted(unknown)} for {model}; the sweep varies {sorted(DEFAULTS[model])}")
        merged = {**DEFAULTS[model], **overrides}
        return cls(model, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in merged.items())))

    @property
    def kwargs(self) -> dict:
        return dict(self.overrides)

    @property
    def key(self) -> str:
        """The CSV's ``config`` column: the model and its overrides as one line of JSON."""
        return json.dumps({"model": self.model, **self.kwargs}, sort_keys=True)

    def build(self, num_classes: int = 10):
        from ..models import create

        return create(self.model, num_classes=num_classes, **self.kwargs)


@dataclass(frozen=True)
class Entry:
    experiment: str
    variant: str
    label: str                       # the network as plots name it
    config: Config = field(compare=False)


PAIRWISE = "san10_pairwise"
PATCHWISE = "san10_patchwise"


def _entries() -> list[Entry]:
    default = Config.of(PAIRWISE)
    out = [Entry("comparison", "main", "SAN10 pairwise", default),
           Entry("comparison", "main", "SAN10 patchwise", Config.of(PATCHWISE)),
           Entry("comparison", "main", "ResNet26", Config.of("resnet26"))]
    for relation in ("summation", "subtraction", "concatenation", "hadamard", "dot"):
        out.append(Entry("pairwise_relation", relation, "SAN10 pairwise", Config.of(PAIRWISE, relation=relation)))
    for relation in ("star", "clique", "concatenation"):
        out.append(Entry("patchwise_relation", relation, "SAN10 patchwise", Config.of(PATCHWISE, relation=relation)))
    for k in (3, 5, 7):           # the first three stages (32, 16, 8 pixels); the last two keep 3 x 3
        kernels = (k, k, k, 3, 3)
        out.append(Entry("footprint", str(k), "SAN10 pairwise", Config.of(PAIRWISE, kernels=kernels)))
    for on in (True, False):
        out.append(Entry("position_encoding", "on" if on else "off", "SAN10 pairwise",
                         Config.of(PAIRWISE, position_encoding=on)))
    for layers in (1, 2, 3):
        out.append(Entry("gamma_depth", str(layers), "SAN10 pairwise", Config.of(PAIRWISE, gamma_layers=layers)))
    for share in ("none", "phi_psi"):
        out.append(Entry("sharing", share, "SAN10 pairwise", Config.of(PAIRWISE, share=share)))
    return out


ENTRIES = _entries()
EXPERIMENTS = tuple(dict.fromkeys(e.experiment for e in ENTRIES))
