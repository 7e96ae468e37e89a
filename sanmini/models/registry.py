"""``create(name)``: the nine models of Zhao et al., CVPR 2020, Table 1, by name."""
from __future__ import annotations

from torch import nn

from ..nn import set_backend
from .resnet import ResNet
from .san import SAN

SAN_LAYERS = {10: (2, 1, 2, 4, 1), 15: (3, 2, 3, 5, 2), 19: (3, 3, 4, 6, 3)}
RESNET_LAYERS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}
SAN_KERNELS = (3, 7, 7, 7, 7)
MODELS = tuple([f"san{d}_{a}" for d in SAN_LAYERS for a in ("pairwise", "patchwise")]
               + [f"resnet{d}" for d in RESNET_LAYERS])


def create(name: str, num_classes: int = 1000, **overrides) -> nn.Module:
    """A model of the paper by name, with the paper's defaults.

    Names: ``san10_pairwise``, ``san10_patchwise``, ``san15_*``, ``san19_*``, ``resnet26``,
    ``resnet38``, ``resnet50``. SAN defaults: pairwise subtraction with position encoding, patchwise
    concatenation, share_planes 8, footprints 3, 7, 7, 7, 7, reflection padding. Overrides rebuild
    the paper's ablations:

    - ``relation``: a name of :data:`sanmini.nn.PAIRWISE_RELATIONS` or ``PATCHWISE_RELATIONS``;
    - ``kernel_size`` (one footprint for every stage) or ``kernels`` (five footprints);
    - ``position_encoding`` (pairwise only), ``share_planes``, ``width`` (stem width, default 64),
      ``layers`` (blocks per stage), ``pad_mode``;
    - ``backend``: the ops backend of every attention layer (``"auto"`` by default);
    - ``recompute``: recompute each attention layer's weight branch in the backward pass instead of
      keeping its (N, C, K*K, H*W) intermediates (less memory for one more forward of the branch;
      :mod:`sanmini.nn.recompute`), ``False`` by default;
    - ``fused`` (pairwise only): each attention layer's weight branch and aggregation as one
      operator that never writes those intermediates (:func:`sanmini.ops.fused_pairwise`; the
      subtraction and summation relations, on the CPU), ``False`` by default.

    - ``gamma_layers``: the depth of gamma (2, the reference's; :func:`sanmini.nn.gamma`), and for
      pairwise models ``share="phi_psi"``: psi the same map as phi. For the paper's ablations.

    ResNets take ``width`` and ``layers``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of {MODELS}")
    if name.startswith("resnet"):
        unknown = set(overrides) - {"width", "layers"}
        if unknown:
            raise ValueError(f"unknown overrides {sorted(unknown)} for {name}; ResNets take width, layers")
        layers = overrides.pop("layers", RESNET_LAYERS[int(name[6:])])
        return ResNet(layers, num_classes=num_classes, **overrides)

    depth, attention = name[3:].split("_")
    kernels = overrides.pop("kernels", SAN_KERNELS)
    if "kernel_size" in overrides:
        kernels = (overrides.pop("kernel_size"),) * 5
    layers = overrides.pop("layers", SAN_LAYERS[int(depth)])
    backend = overrides.pop("backend", "auto")
    allowed = {"relation", "share_planes", "width", "pad_mode", "recompute", "gamma_layers"}
    if attention == "pairwise":
        allowed |= {"position_encoding", "share", "fused"}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)} for {name}; "
                         f"choose from {sorted(allowed | {'kernels', 'kernel_size', 'layers', 'backend'})}")
    model = SAN(attention, layers, kernels, num_classes=num_classes, **overrides)
    return set_backend(model, backend)
