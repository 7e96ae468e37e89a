"""Reading the aggregation weights alpha out of a model, for display."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def aggregation_weights(model: nn.Module, x: torch.Tensor, layer: str = "") -> torch.Tensor:
    """Run ``model`` on ``x`` and return the weights that the aggregation of ``layer`` used,
    (N, Cw, K*K, Ho, Wo): alpha of Eq. (2) (pairwise, softmax-normalised over the footprint),
    alpha of Eq. (4) (patchwise), or the fixed kernel of a :class:`sanmini.nn.FixedAggregation`.

    Args:
        model: any module; it is run in its current mode (call ``.eval()`` first for inference).
        x: the model's input.
        layer: dotted name of a submodule that has an ``aggregation`` (a pairwise or patchwise
            attention layer, a FixedAggregation), e.g. ``"layer"`` in the book's denoiser or
            ``"layer1.0.sam"`` in a SAN; ``""`` for the model itself.
    """
    target = model.get_submodule(layer)
    if not hasattr(target, "aggregation"):
        raise ValueError(f"{layer or type(model).__name__!r} has no aggregation: name a pairwise or "
                         "patchwise attention layer, or a FixedAggregation")
    captured = {}

    def hook(module, inputs, output):
        captured["alpha"], captured["size"] = inputs[1].detach(), output.shape[-2:]

    handle = target.aggregation.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    alpha = captured["alpha"]
    return alpha.reshape(*alpha.shape[:3], *captured["size"])


def weight_variation(weights: torch.Tensor) -> float:
    """How much aggregation weights (Cw, K*K, H, W) change from pixel to pixel: the standard
    deviation over pixels of each (weight channel, footprint position), relative to its mean size,
    averaged. Exactly 0 for a convolution, whose weights are the same at every pixel."""
    spread = weights.std(dim=(-2, -1)) / weights.abs().mean(dim=(-2, -1)).clamp_min(1e-12)
    return float(spread.mean())
