"""Reading the aggregation weights alpha out of a model, for display."""
from __future__ import annotations

import torch
from torch import nn


def _fused_alpha(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """alpha (N, Cw, K*K, L) of a ``fused=True`` pairwise layer for its input ``x``: its weight
    branch (:meth:`sanmini.nn.PairwiseAttention.weights`), which the fused operator computes without
    writing it out. gamma's batch norms are left as the layer's forward left them: in training mode
    the branch normalises with the batch's statistics, as the fused operator does, and the running
    statistics it would update a second time are put back."""
    norms = [m for m in layer.conv_w.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    buffers = [{name: b.clone() for name, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        return layer.weights(layer.conv1(x), layer.conv2(x), x)
    finally:
        for m, saved in zip(norms, buffers):
            for name, value in saved.items():
                getattr(m, name).copy_(value)


@torch.no_grad()
def aggregation_weights(model: nn.Module, x: torch.Tensor, layer: str = "") -> torch.Tensor:
    """Run ``model`` on ``x`` and return the weights that the aggregation of ``layer`` used,
    (N, Cw, K*K, Ho, Wo): alpha of Eq. (2) (pairwise, softmax-normalised over the footprint),
    alpha of Eq. (4) (patchwise), or the fixed kernel of a :class:`sanmini.nn.FixedAggregation`.

    A pairwise layer built with ``fused=True`` never writes alpha out (its operator computes it
    tile by tile); its alpha is computed here from the layer's weight branch on the layer's input,
    the same alpha the plain layer with the same weights uses.

    Args:
        model: any module; it is run in its current mode (call ``.eval()`` first for inference).
        x: the model's input.
        layer: dotted name of a submodule that has an ``aggregation`` (a pairwise or patchwise
            attention layer, a FixedAggregation), e.g. ``"layer"`` in the book's denoiser or
            ``"layer1.0.sam"`` in a SAN; ``""`` for the model itself.

    Refused: a ``layer`` that is no submodule or has no aggregation, and a layer the model never
    runs on ``x``.
    """
    try:
        target = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"layer must name a submodule of the model, e.g. one of "
                         f"{[name for name, m in model.named_modules() if hasattr(m, 'aggregation')][:5]}, "
                         f"got {layer!r}") from None
    if not hasattr(target, "aggregation"):
        raise ValueError(f"{layer or type(model).__name__!r} has no aggregation: name a pairwise or "
                         "patchwise attention layer, or a FixedAggregation")
    captured = {}

    def aggregated(module, inputs, output):
        captured["alpha"], captured["size"] = inputs[1].detach(), output.shape[-2:]

    def fused(module, inputs, output):
        captured["alpha"], captured["size"] = _fused_alpha(module, inputs[0]).detach(), output.shape[-2:]

    if getattr(target, "fused", False):
        handle = target.register_forward_hook(fused)
    else:
        handle = target.aggregation.register_forward_hook(aggregated)
    try:
        model(x)
    finally:
        handle.remove()
    if "alpha" not in captured:
        raise ValueError(f"the model did not run {layer or type(model).__name__!r} on x: name a layer "
                         f"its forward calls")
    alpha = captured["alpha"]
    return alpha.reshape(*alpha.shape[:3], *captured["size"])


def weight_variation(weights: torch.Tensor) -> float:
    """How much aggregation weights (Cw, K*K, H, W) change from pixel to pixel: the standard
    deviation over pixels of each (weight channel, footprint position), relative to its mean size,
    averaged. Exactly 0 for a convolution, whose weights are the same at every pixel. Refused:
    anything but a floating-point tensor (Cw, K*K, H, W) of at least two pixels."""
    if not isinstance(weights, torch.Tensor) or weights.ndim != 4 or not weights.is_floating_point() \
            or weights.shape[-2:].numel() < 2:
        raise ValueError(f"weights must be a floating-point tensor (Cw, K*K, H, W) of at least two pixels "
                         f"(e.g. aggregation_weights(...)[0]), got "
                         f"{tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__}")
    spread = weights.std(dim=(-2, -1)) / weights.abs().mean(dim=(-2, -1)).clamp_min(1e-12)
    return float(spread.mean())
