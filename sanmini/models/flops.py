"""Multiply-adds of a model, in the convention of the paper's Table 1 (Zhao et al., CVPR 2020).

Counted per call of each layer (forward hooks), for one forward pass:

=============================  =============================================================
layer                          multiply-adds
=============================  =============================================================
convolution                    K*K*Cin*Cout/groups per output position, + Cout per output
                               position for a bias
batch norm                     2 per element
ReLU                           1 per element, at every call
max / average pooling          1 per input element
linear                         in * out (the bias is not counted)
aggregation                    C * Ho * Wo * K*K
subtraction, subtraction2      1 per output element
relation products              hadamard and dot: R per (i, j) pair; star: R per (i, j) pair;
                               clique: R per (j, k) pair (R the relation width)
softmax, unfold, padding,      nothing
concatenation, residual add
=============================  =============================================================

This is the convention of the reference implementation's counter: for the nine default models it
gives exactly SAN10 2,155,268,622 / 1,865,421,568 (pairwise / patchwise), SAN15 3,022,716,308 /
2,582,850,560, SAN19 3,844,152,602 / 3,258,984,704, ResNet26/38/50 2,361,448,960 / 3,241,686,528 /
4,121,924,096 at 224 x 224. The position encoding of pairwise attention is computed once per
forward pass, whatever the batch; it is counted once and the total divided by the batch size.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..nn import Aggregation, MaxPool2x2, PairwiseAttention, PatchwiseAttention, Subtraction, Subtraction2
from ..nn.maps import stackable
from ..nn.operators import Unfold
from ..nn.pointwise import Pointwise


def _conv(m: nn.Conv2d, inputs, out) -> int:
    per_position = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups * m.out_channels
    positions = out.numel() // m.out_channels
    return positions * per_position + (out.numel() if m.bias is not None else 0)


def _relation(m, inputs, out) -> int:
    """The products inside a relation that is not a subtraction (see the table above), and phi, psi
    and beta where the layer computes them as one convolution (:func:`sanmini.nn.maps.one_pass`),
    whose modules are then not called: counted as the three convolutions."""
    x = inputs[0]
    n, rel = x.shape[0], m.conv1.out_channels
    taps, positions = m.aggregation.kernel_size ** 2, out.shape[2] * out.shape[3]
    pairs = {"hadamard": taps, "dot": taps, "star": taps, "clique": taps * taps}.get(m.relation, 0)
    maps = (m.conv1, m.conv2, m.conv3)
    stacked = sum(_conv(c, None, x.new_empty(n, c.out_channels, *x.shape[2:], device="meta")) for c in maps) \
        if stackable(maps) else 0
    return n * rel * pairs * positions + stacked


COUNTERS = {
    nn.Conv2d: _conv,
    Pointwise: _conv,
    nn.BatchNorm2d: lambda m, i, o: 2 * o.numel(),
    nn.ReLU: lambda m, i, o: o.numel(),
    nn.MaxPool2d: lambda m, i, o: i[0].numel(),
    MaxPool2x2: lambda m, i, o: i[0].numel(),
    nn.AdaptiveAvgPool2d: lambda m, i, o: i[0].numel(),
    nn.AvgPool2d: lambda m, i, o: i[0].numel(),
    nn.Linear: lambda m, i, o: i[0].numel() // m.in_features * m.in_features * m.out_features,
    Aggregation: lambda m, i, o: o.numel() * m.kernel_size ** 2,
    Subtraction: lambda m, i, o: o.numel(),
    Subtraction2: lambda m, i, o: o.numel(),
    PairwiseAttention: _relation,
    PatchwiseAttention: _relation,
}


# Elementwise activations other than ReLU: 1 per element at every call, as ReLU.
for _activation in (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.ReLU6, nn.Hardswish,
                    nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.PReLU):
    COUNTERS[_activation] = COUNTERS[nn.ReLU]
# Modules with no multiply-adds: gathers, reshapes, identities.
FREE = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout2d, Unfold)


@torch.no_grad()
def count_flops(model: nn.Module, input_size=(1, 3, 224, 224)) -> int:
    """Multiply-adds per image of one forward pass of ``model`` on an input of ``input_size``.

    A module type with no rule here (and not one of :data:`FREE`) is not counted, and a warning
    names it, so that a total is never silently short."""
    if len(input_size) < 1 or isinstance(input_size[0], bool) or not isinstance(input_size[0], int) \
            or input_size[0] < 1:
        raise ValueError(f"input_size must start with a batch of at least 1 image, got {tuple(input_size)}")
    uncounted = sorted({type(m).__name__ for m in model.modules()
                        if not list(m.children()) and type(m) not in COUNTERS and not isinstance(m, FREE)})
    if uncounted:
        warnings.warn(f"count_flops has no rule for {', '.join(uncounted)}: their multiply-adds are "
                      "left out of the total", stacklevel=2)
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += COUNTERS[type(module)](module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in COUNTERS]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        model(torch.zeros(input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total // input_size[0]
