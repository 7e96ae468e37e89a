"""Every configuration of the sweep: the comparison of Zhao et al.'s main table and their ablations,
at the width of a laptop.

Two plans live here. :data:`FAIR` (with :data:`FAIR_DEFAULTS`, :data:`FAIR_ATTACKS`,
:data:`FAIR_SEEDS`) is the fair sweep recorded in ``book/results/experiments.csv``, which chapter
5b reads, on :data:`.task.TEXTURES`: networks as the paper built them (see
:data:`FAIR_DEFAULTS`), each network's step size chosen on a holdout part of the training pool,
more seeds, converged attacks. ``python -m sanmini.experiments`` runs :data:`FAIR`.
:data:`ENTRIES` (with :data:`DEFAULTS`, :data:`ATTACKS`, seeds 0-4) is the first sweep, kept in
``book/results/digits-first-sweep.csv`` (``--plan first``), described below; chapter 5b says why
its verdicts were withdrawn.

The first plan:

An :class:`Entry` names an experiment, a variant of it and the network trained for it. Entries
with the same :class:`Config` (an ablation's default variant is the comparison's SAN10 pairwise)
are trained once per seed and recorded under each entry.

The networks (``sanmini.create`` with these overrides, 10 classes):

- SAN10 pairwise and patchwise: a stem of 16 channels, weights shared over 4 channels, 3 x 3
  footprints in every stage (a handicap: the paper's 7 x 7 from the second stage on fits at
  64 x 64 too, but for the last stage, :func:`paper_kernels`), the paper's relations (subtraction with
  position encoding; concatenation), Numba's CPU kernels;
- ResNet26 with a stem of 14 channels: matched in parameters, the width whose count is closest to
  SAN10 pairwise's (568,592 against 544,144 and, patchwise, 584,174); its multiply-adds at
  64 x 64 are then 9% and 13% more than the SANs' (both counts are recorded).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from .task import TEXTURES, Task

# Every override spelled out, so that a variant equal to the default is the same Config.
SAN = {"width": 16, "share_planes": 4, "kernels": (3, 3, 3, 3, 3), "gamma_layers": 2, "backend": "cpu"}
DEFAULTS = {"san10_pairwise": {**SAN, "relation": "subtraction", "position_encoding": True, "share": "none"},
            "san10_patchwise": {**SAN, "relation": "concatenation"},
            "resnet26": {"width": 14}}
PLAN_DEFAULTS = {"": DEFAULTS}                 # the defaults of each task's plan; "textures" below
VIEWED = ("comparison", "position_encoding")   # measured on rotated and flipped digits too
ATTACKS = {
    "images": 100,                                  # correctly classified by all three networks of a seed
    "eps": (0.01, 0.02, 0.05, 0.1),                 # L-infinity budgets, pixels in [0, 1]
    "pgd_steps": 10,                                # step size 2.5 * eps / steps, random start
}


RUN_SETTINGS = ("tune_lr", "epochs")
"""Overrides of a :class:`Config` that say how a run trains, not which network it trains."""


@dataclass(frozen=True)
class Config:
    """A network: the ``sanmini.create`` name and its overrides, and the task it trains on
    (``""``: the first sweep's digits, :data:`.task.TASK`; ``"textures"``: :data:`.task.TEXTURES`).
    A config with a ``tune_lr`` is a tuning run of the network at that step size (see
    :meth:`tuned`)."""
    model: str
    overrides: tuple = ()            # sorted (key, value) pairs, hashable
    task: str = ""

    @classmethod
    def of(cls, model: str, task: str = "", **overrides) -> "Config":
        if task not in PLAN_DEFAULTS:
            raise ValueError(f"task must be one of {sorted(PLAN_DEFAULTS)}, got {task!r}")
        defaults = PLAN_DEFAULTS[task][model]
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise ValueError(f"unknown overrides {sorted(unknown)} for {model}; the sweep varies {sorted(defaults)}")
        merged = {**defaults, **overrides}
        return cls(model, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in merged.items())), task)

    def tuned(self, lr: float) -> "Config":
        """The tuning run of this network at step size ``lr`` (per 256 images)."""
        return Config(self.model, tuple(sorted(self.overrides + (("tune_lr", lr),))), self.task)

    def trained_for(self, epochs: int) -> "Config":
        """This network trained for ``epochs`` epochs instead of its task's, with its training
        loss and top-1 recorded at every epoch (experiment ``training_length``)."""
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be an int of at least 1, got {epochs!r}")
        return Config(self.model, tuple(sorted(self.network.overrides + (("epochs", epochs),))), self.task)

    @property
    def network(self) -> "Config":
        """The network alone, without how a run of it trains (``tune_lr``, ``epochs``): the network
        a tuning run tunes, or a longer run trains; itself for a network."""
        return Config(self.model, tuple(kv for kv in self.overrides if kv[0] not in RUN_SETTINGS), self.task)

    def run_task(self, task: Task) -> Task:
        """``task`` (a :class:`.task.Task`) as this run trains on it: with this run's ``epochs``
        when it sets them (:meth:`trained_for`), else unchanged."""
        return task if self.epochs is None else replace(task, epochs=self.epochs)

    @property
    def tune_lr(self) -> float | None:
        return dict(self.overrides).get("tune_lr")

    @property
    def epochs(self) -> int | None:
        """The epochs this run trains for, if not its task's (see :meth:`trained_for`)."""
        return dict(self.overrides).get("epochs")

    @property
    def kwargs(self) -> dict:
        return dict(self.overrides)

    @property
    def key(self) -> str:
        """The CSV's ``config`` column: the model, its overrides and (if any) its task as one line
        of JSON."""
        return json.dumps({"model": self.model, **self.kwargs, **({"task": self.task} if self.task else {})},
                          sort_keys=True)

    @property
    def name(self) -> str:
        """The model and the overrides where it differs from its plan's default, as the sweep's
        messages name it: ``san10_pairwise``, ``san10_pairwise kernels=(7, 7, 7, 3, 3)``."""
        defaults = PLAN_DEFAULTS.get(self.task, DEFAULTS).get(self.model, {})
        changed = [f"{k}={v}" for k, v in self.overrides if defaults.get(k) != v]
        return " ".join([self.model, *changed])

    def build(self, num_classes: int = 10):
        """The network, untrained: ``sanmini.create`` with the overrides; a SAN of the fair sweep's
        task without a ``backend`` override is computed by :data:`FAIR_BACKEND`."""
        from ..models import create

        kwargs = {k: v for k, v in self.overrides if k not in RUN_SETTINGS}
        if self.task and self.model.startswith("san") and "backend" not in kwargs:
            kwargs["backend"] = FAIR_BACKEND
        return create(self.model, num_classes=num_classes, **kwargs)


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


# --- the fair sweep (issue 29) -------------------------------------------------------------------

def paper_kernels(image_size: int, first: int = 3, later: int = 7) -> tuple:
    """The paper's footprints, ``first`` in the first stage and ``later`` from the second on,
    wherever the stage's map can hold a reflection-padded footprint (padding (K - 1) / 2 below
    the map's side ``image_size / 2^(k+1)``); elsewhere the largest odd size that fits. At 64 x 64:
    maps of 32, 16, 8, 4 and 2 pixels, footprints (3, 7, 7, 7, 3): the 2 x 2 last stage holds at
    most a 3 x 3 footprint, which covers its whole map."""
    out = []
    for k, wanted in enumerate((first,) + (later,) * 4):
        side = image_size // 2 ** (k + 1)
        fits = 2 * side - 1                  # the largest K with (K - 1) / 2 < side
        if fits < 1:
            raise ValueError(f"image_size {image_size} leaves stage {k} without pixels")
        out.append(min(wanted, fits if fits % 2 else fits - 1))
    return tuple(out)


def attention_channels(width: int, share_planes: int) -> list[tuple[int, int]]:
    """(relation channels, weight channels) of every stage's attention of a SAN10 of stem
    ``width``: the block's ``C / 16`` relation channels and ``(C / 4) / share_planes`` weight
    channels, C = ``width`` times 1, 4, 8, 16, 32 (:class:`sanmini.nn.SANBlock`)."""
    return [(width * m // 16, width * m // 4 // share_planes) for m in (1, 4, 8, 16, 32)]


def smallest_width(share_planes: int = 8, least: int = 2) -> int:
    """The smallest stem width whose every stage has at least ``least`` relation and ``least``
    weight channels, at the paper's relation ratio (``C / 16`` relation channels) with weights
    shared over ``share_planes`` channels: 64 with the paper's sharing over 8 (the paper's own
    width; its first stage has 4 relation and 2 weight channels), 32 with sharing over 4."""
    width = 1
    while not (width // 4 % share_planes == 0 and
               all(r >= least and w >= least for r, w in attention_channels(width, share_planes))):
        width += 1
    return width


FAIR_IMAGE_SIZE = 64
FAIR_SHARE = 4
FAIR_SAN = {"width": smallest_width(FAIR_SHARE), "share_planes": FAIR_SHARE, "kernels": paper_kernels(FAIR_IMAGE_SIZE),
            "gamma_layers": 2}
FAIR_BACKEND = "cpu"
"""How the fair sweep's SANs are computed (Numba's CPU kernels). Not part of a network's identity
(its Config and the CSV's ``config``): every backend computes the same network, checked against
the plain torch one in float64 (tests/test_fused.py, tests/test_cpu_kernels.py), so a faster one can
take over a sweep in progress without its rows counting as another plan's."""
FAIR_DEFAULTS = {"san10_pairwise": {**FAIR_SAN, "relation": "subtraction", "position_encoding": True, "share": "none"},
                 "san10_patchwise": {**FAIR_SAN, "relation": "concatenation"},
                 "resnet26": {"width": 28}}
"""The fair sweep's networks, at 64 x 64 (12 classes):

- SAN10 pairwise and patchwise at half the paper's width, with every stage's attention keeping at
  least 2 relation and 2 weight channels: stem 32 (the smallest width with ``C / 16`` >= 2
  relation channels in the first stage), weights shared over 4 channels (over the paper's 8, the
  first stage would have 1 weight channel: :func:`attention_channels`), so 2 relation and 2 weight
  channels in the first stage, as :func:`smallest_width` finds. The paper's width (stem 64,
  sharing over 8) costs about four times as much per step, more than the sweep's 240 minutes on 2
  cores allow. Footprints (3, 7, 7, 7, 3) (:func:`paper_kernels`: the last stage's 2 x 2 map
  cannot hold a reflection-padded 7 x 7, and a 3 x 3 covers it);
- ResNet26 of stem 28, matched in parameters to SAN10 pairwise (2,249,896 against 2,147,708, 12
  classes; the even width whose count is closest; stem 27, 2,093,025, would be a little closer),
  and ResNet26 of stem 32, matched in multiply-adds (51.0 M against 49.6 M at 64 x 64): :data:`MADDS_WIDTH`, trained too, as entry "ResNet26
  (multiply-adds)". SAN10 patchwise has 2,696,384 parameters and 47.4 M multiply-adds.
"""
MADDS_WIDTH = 32
PLAN_DEFAULTS["textures"] = FAIR_DEFAULTS

FAIR_PAIRWISE_RELATIONS = ("subtraction", "concatenation", "hadamard", "dot")
"""The pairwise relations the fair sweep trains, Zhao et al.'s five but summation, which is
subtraction's network in disguise (a summation layer whose psi is negated is a subtraction layer,
and psi's initialisation is symmetric about zero: the same network, the same distribution of
initial weights; chapter 3 shows it, tests/test_experiments_fair.py checks it on a SAN10).
Trained twice, their difference would be the experiment's noise, read as a difference of
relations; chapter 5b reports summation as subtraction."""

FAIR_ATTACKS = {
    "images": 100,                                  # correctly classified by every network of a seed
    "eps": (0.005, 0.01, 0.02, 0.04),               # L-infinity budgets, pixels in [0, 1] (about 1, 2.5, 5, 10 / 255)
    "pgd_steps": 20,                                # step size 2.5 * eps / steps
    "pgd_restarts": 3,                              # random starts; success at any iterate, cumulative over eps
}
FAIR_VIEWED = ("comparison", "position_encoding")
STEP_SIZE = "step_size"                             # the experiment of the tuning runs


def _fair_entries() -> list[Entry]:
    t = "textures"
    default = Config.of(PAIRWISE, t)
    out = [Entry("comparison", "main", "SAN10 pairwise", default),
           Entry("comparison", "main", "SAN10 patchwise", Config.of(PATCHWISE, t)),
           Entry("comparison", "main", "ResNet26", Config.of("resnet26", t)),
           Entry("comparison", "main", "ResNet26 (multiply-adds)", Config.of("resnet26", t, width=MADDS_WIDTH))]
    for relation in FAIR_PAIRWISE_RELATIONS:
        out.append(Entry("pairwise_relation", relation, "SAN10 pairwise", Config.of(PAIRWISE, t, relation=relation)))
    for relation in ("star", "clique", "concatenation"):
        out.append(Entry("patchwise_relation", relation, "SAN10 patchwise", Config.of(PATCHWISE, t, relation=relation)))
    for k in (3, 5, 7):           # the stages that can hold a 7 x 7 (16, 8, 4 pixels); the first keeps 3, the last 3
        kernels = tuple(k if 1 <= stage <= 3 else kernel for stage, kernel in enumerate(FAIR_SAN["kernels"]))
        out.append(Entry("footprint", str(k), "SAN10 pairwise", Config.of(PAIRWISE, t, kernels=kernels)))
    for on in (True, False):
        out.append(Entry("position_encoding", "on" if on else "off", "SAN10 pairwise",
                         Config.of(PAIRWISE, t, position_encoding=on)))
    for layers in (1, 2, 3):
        out.append(Entry("gamma_depth", str(layers), "SAN10 pairwise", Config.of(PAIRWISE, t, gamma_layers=layers)))
    for share in ("none", "phi_psi"):
        out.append(Entry("sharing", share, "SAN10 pairwise", Config.of(PAIRWISE, t, share=share)))
    for entry in out[:4]:         # the comparison's networks, trained twice as long
        out.append(Entry(TRAINING_LENGTH, str(LONGER_EPOCHS), entry.label, entry.config.trained_for(LONGER_EPOCHS)))
    return out


TRAINING_LENGTH = "training_length"
LONGER_EPOCHS = 40
"""The training-length check: the comparison's four networks trained for 40 epochs, twice the
task's 20, at their chosen step sizes, at the comparison's eight seeds (the same training crops,
initial weights and batch order), with the training loss and top-1 of every epoch recorded and
the upright validation top-1 (no views, no attacks). Chapter 5b reads whether the 20 epochs
stopped a network short of what it can learn, and whether claims 1 and 2 read the same at 40
epochs. (Seeds 0-2 ran first; the first of them moved the ResNet26 matched in multiply-adds by 5
points, so the check was widened to all eight.)"""


def tuning_entries(entries, grid) -> list[Entry]:
    """The tuning runs of every network of ``entries`` at each step size of ``grid``: entries of
    experiment :data:`STEP_SIZE`, variant the step size, labelled with the network's name. A
    network of a sweep without tuning runs of its own trains at the step size chosen for its
    model's default network (``sanmini.experiments.sweep.tuned_as``)."""
    networks = dict.fromkeys(e.config for e in entries if e.experiment != STEP_SIZE)
    return [Entry(STEP_SIZE, f"{lr:g}", config.name, config.tuned(lr)) for config in networks for lr in grid]


FAIR_SEEDS = {"comparison": range(8), "footprint": range(5), "position_encoding": range(5),
              "pairwise_relation": range(5), "patchwise_relation": range(5), "gamma_depth": range(3),
              "sharing": range(3), STEP_SIZE: range(1), TRAINING_LENGTH: range(8)}
"""Seeds of each experiment of :data:`FAIR`: 8 for the comparison, 5 for the ablations the verdicts
hinge on (footprint, position encoding, relations), 3 for the others, the comparison's 8 for the
training-length check (:data:`LONGER_EPOCHS`); one tuning run per network
and step size (at the task's ``tune_seed``: its data, weights and batch order)."""

FAIR_NETWORKS = _fair_entries()
FAIR_TUNED = [e for e in FAIR_NETWORKS if e.experiment == "comparison"]
FAIR = FAIR_NETWORKS + tuning_entries(FAIR_TUNED, TEXTURES.lr_grid)
"""Every entry of the fair sweep, the networks and the tuning runs of the comparison's four
networks (16 runs, at the step sizes of :data:`.task.TEXTURES`'s ``lr_grid``). An ablation's variant trains at the step size chosen for the network it
varies (SAN10 pairwise or patchwise): tuning each of the 13 variants too would cost as much as
the comparison's 8 seeds of SAN10 pairwise twice over, which the 240 minutes do not hold."""
FAIR_EXPERIMENTS = tuple(dict.fromkeys(e.experiment for e in FAIR))

