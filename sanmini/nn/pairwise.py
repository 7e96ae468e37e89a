"""Pairwise self-attention (Zhao et al., CVPR 2020, Sec. 3.1, Eq. 2 and 3).

    y_i = sum_{j in R(i)} alpha(x_i, x_j) ⊙ beta(x_j),   alpha(x_i, x_j) = gamma(delta(x_i, x_j))

with phi, psi, beta learned 1x1 maps (``conv1``, ``conv2``, ``conv3``), gamma the BN-ReLU-conv-BN-
ReLU-conv mapping of :mod:`.gamma` (``conv_w``), the weights normalised by a softmax over the
footprint R(i), and one weight channel shared by ``share_planes`` value channels. The relation
delta is one of the paper's five:

==================  ================================  ===============================
``relation``        delta(x_i, x_j)                   channels into gamma
==================  ================================  ===============================
``"summation"``     phi(x_i) + psi(x_j)               rel_planes
``"subtraction"``   phi(x_i) - psi(x_j)               rel_planes
``"concatenation"`` [phi(x_i), psi(x_j)]              2 * rel_planes
``"hadamard"``      phi(x_i) ⊙ psi(x_j)               rel_planes
``"dot"``           phi(x_i)^T psi(x_j)               1
==================  ================================  ===============================

For the paper's ablations: ``gamma_layers`` sets the depth of gamma (:mod:`.gamma`), and
``share="phi_psi"`` makes psi the same map as phi (one 1x1 conv, ``conv2`` is ``conv1``), so the
relation compares phi(x_i) with phi(x_j). At their defaults (2, ``"none"``) the layer is the
released one.

With ``position_encoding`` the relation is concatenated with p_i - p_j of the encoded coordinates
(:mod:`.position`, ``conv_p``), two more channels. The defaults (subtraction, position encoding,
reflection padding) are the reference implementation's, parameter for parameter.

The weight branch, from phi(x) and psi(x) to the normalised weights alpha
(:meth:`PairwiseAttention.weights`), holds the layer's large tensors, (N, C, K*K, L) at every step
of gamma; ``recompute=True`` trades their memory for one more forward of that branch
(:mod:`.recompute`), and ``fused=True`` never writes them: the relation, gamma, the softmax and the
aggregation run as one operator, tile of pixels by tile (:func:`sanmini.ops.fused_pairwise`;
subtraction and summation relations, gamma of two layers, on the CPU, where it takes less memory
but more time than the plain layer: bench/RESULTS.md).
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops.fused import FUSED_RELATIONS, fused_pairwise
from .checks import check_bool, check_input, check_int
from .gamma import gamma
from .maps import one_pass
from .operators import Aggregation, Subtraction, Subtraction2, Unfold
from .position import position_grid
from .recompute import recompute as recompute_branch
from .recompute import recording

RELATIONS = ("summation", "subtraction", "concatenation", "hadamard", "dot")
SHARES = ("none", "phi_psi")      # which transformation functions are one map (the paper's ablation)


def check_footprint(kernel_size: int, out_planes: int, share_planes: int) -> None:
    """The checks shared by pairwise and patchwise attention."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
            or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int (the footprint has a centre), "
                         f"got {kernel_size!r}")
    check_int("out_planes", out_planes)
    check_int("share_planes", share_planes)
    if out_planes % share_planes != 0:
        raise ValueError(f"share_planes={share_planes} must divide the value width "
                         f"out_planes={out_planes}")


class PairwiseAttention(nn.Module):
    """x (N, in_planes, H, W) -> y (N, out_planes, Ho, Wo), Eq. (2) with the relation of Eq. (3).

    ``recompute``: when autograd records (training), keep only phi(x), psi(x) and alpha of the weight
    branch for the backward pass and run the branch again there to rebuild the rest (the relation
    and position encoding (N, rel_planes + 2, K*K, L), gamma's batch-norm, ReLU and conv
    intermediates of that size, its logits (N, out/share, K*K, L)): less memory
    for one more forward of the branch, with the same outputs, gradients and batch-norm running
    statistics (:mod:`.recompute`). No effect under ``torch.no_grad`` or in inference.

    ``fused``: compute everything after phi(x), psi(x), beta(x) and the position encoding in one
    operator (:func:`sanmini.ops.fused_pairwise`) that keeps nothing of size K*K per pixel, with the
    same outputs, gradients and running statistics as the plain layer. For the subtraction and
    summation relations and gamma of two layers. Its kernels follow ``backend``: ``"cpu"`` or
    ``"cuda"`` choose them; ``"auto"`` and ``"torch"`` let the tensors' device choose.

    Refused when the layer is built: sizes that are not positive ints, an even ``kernel_size``,
    ``position_encoding``, ``recompute`` or ``fused`` that is not a bool (``"no"`` would count as
    true). At the forward: an input that is not (N, in_planes, H, W), e.g. a single image (C, H, W).
    """

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 7, stride: int = 1, dilation: int = 1,
                 relation: str = "subtraction", position_encoding: bool = True,
                 pad_mode: str = "reflect", backend: str = "auto", recompute: bool = False,
                 gamma_layers: int = 2, share: str = "none", fused: bool = False):
        super().__init__()
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS} for pairwise attention, "
                             f"got {relation!r}")
        if share not in SHARES:
            raise ValueError(f"share must be one of {SHARES} for pairwise attention, got {share!r}")
        check_footprint(kernel_size, out_planes, share_planes)
        check_int("in_planes", in_planes)
        check_int("rel_planes", rel_planes)
        for name, flag in (("position_encoding", position_encoding), ("recompute", recompute), ("fused", fused)):
            check_bool(name, flag)
        if fused:
            if relation not in FUSED_RELATIONS:
                raise ValueError(f"fused=True computes the relations {tuple(FUSED_RELATIONS)}, got "
                                 f"relation={relation!r}; use fused=False for it")
            if gamma_layers != 2:
                raise ValueError(f"fused=True computes gamma of two layers, got gamma_layers={gamma_layers}")
            if recompute:
                raise ValueError("fused=True keeps nothing of the weight branch, so recompute=True "
                                 "has nothing to do: give one of them")
        self.relation, self.position_encoding, self.recompute = relation, position_encoding, recompute
        self.fused = fused
        self.share = share
        self.conv1 = nn.Conv2d(in_planes, rel_planes, kernel_size=1)      # phi
        self.conv2 = self.conv1 if share == "phi_psi" else nn.Conv2d(in_planes, rel_planes, kernel_size=1)  # psi
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)      # beta
        width = {"concatenation": 2 * rel_planes, "dot": 1}.get(relation, rel_planes)
        width += 2 if position_encoding else 0
        self.conv_w = gamma(width, rel_planes, out_planes // share_planes, gamma_layers)
        if position_encoding:
            self.conv_p = nn.Conv2d(2, 2, kernel_size=1)
        footprint = dict(kernel_size=kernel_size, stride=stride, dilation=dilation,
                         pad_mode=pad_mode, backend=backend)
        self.subtraction = Subtraction(**footprint)
        self.subtraction2 = Subtraction2(**footprint)
        self.unfold = Unfold(**footprint)
        self.aggregation = Aggregation(**footprint)

    def delta(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """phi(x) (N, R, H, W), psi(x) (N, R, H, W) -> the relation (N, channels, K*K, L)."""
        if self.relation == "subtraction":
            return self.subtraction2(x1, x2)
        if self.relation == "summation":
            return self.subtraction2(x1, -x2)                       # x1_i - (-x2_j)
        xi, _ = self.unfold(x1)                                     # (N, R, 1, L)
        _, xj = self.unfold(x2)                                     # (N, R, K*K, L)
        if self.relation == "concatenation":
            return torch.cat([xi.expand_as(xj), xj], dim=1)
        if self.relation == "hadamard":
            return xi * xj
        return (xi * xj).sum(dim=1, keepdim=True)                   # dot

    def encoded_positions(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, in_planes, H, W) for the grid's size -> p = conv_p(coordinates), (1, 2, H, W)."""
        return self.conv_p(position_grid(x.shape[2], x.shape[3], device=x.device, dtype=x.dtype))

    def weights(self, x1: torch.Tensor, x2: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """phi(x), psi(x) (N, R, H, W), x (N, in_planes, H, W) for the grid's size and dtype ->
        alpha (N, out/share, K*K, L): gamma(delta(x_i, x_j), p_i - p_j), softmax over j in R(i)."""
        rel = self.delta(x1, x2)                                    # (N, *, K*K, L)
        if self.position_encoding:
            pos = self.subtraction(self.encoded_positions(x))       # (1, 2, K*K, L): p_i - p_j
            rel = torch.cat([rel, pos.expand(x.shape[0], -1, -1, -1).to(rel.dtype)], dim=1)
        return self.conv_w(rel).softmax(dim=2)                      # (N, out/share, K*K, L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.conv1.in_channels)
        x1, x2, x3 = one_pass(x, (self.conv1, self.conv2, self.conv3))   # phi, psi, beta: one convolution
        if self.fused:
            p = self.encoded_positions(x) if self.position_encoding else None
            window = self.aggregation
            return fused_pairwise(x1, x2, x3, p, self.conv_w, relation=self.relation,
                                  kernel_size=window.kernel_size, stride=window.stride,
                                  padding=window.padding, dilation=window.dilation,
                                  pad_mode=window.pad_mode, training=self.conv_w[0].training,
                                  backend=window.backend if window.backend in ("cpu", "cuda") else "auto")
        if self.recompute and recording(self, x1, x2, x):
            alpha = recompute_branch(self, self.weights, x1, x2, x)
        else:
            alpha = self.weights(x1, x2, x)                         # (N, out/share, K*K, L)
        return self.aggregation(x3, alpha)                          # (N, out, Ho, Wo)
