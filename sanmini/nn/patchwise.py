"""Patchwise self-attention (Zhao et al., CVPR 2020, Sec. 3.2, Eq. 4 and 5).

    y_i = sum_{j in R(i)} alpha(x_R(i))_j ⊙ beta(x_j),   alpha(x_R(i)) = gamma(delta(x_R(i)))

The weights at i depend on the whole footprint x_R(i), not on one pair: gamma maps delta to K*K
weight vectors, one per footprint position j, which are not normalised (as in the reference
implementation). The relation delta is one of the paper's three:

==================  ==========================================  ======================
``relation``        delta(x_R(i))                               channels into gamma
==================  ==========================================  ======================
``"star"``          [phi(x_i)^T psi(x_j)] for all j in R(i)     K*K
``"clique"``        [phi(x_j)^T psi(x_k)] for all j, k in R(i)  K*K * K*K
``"concatenation"`` [phi(x_i), [psi(x_j)] for all j in R(i)]    rel_planes * (K*K + 1)
==================  ==========================================  ======================

The weight branch, from phi(x) and psi(x) to alpha (:meth:`PatchwiseAttention.weights`), holds
the layer's large tensors (the relation has rel_planes * (K*K + 1) channels per pixel for
concatenation); ``recompute=True`` trades their memory for one more forward of that branch
(:mod:`.recompute`).
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_bool, check_input, check_int
from .gamma import gamma
from .maps import one_pass
from .operators import Aggregation, Unfold
from .pairwise import check_footprint
from .recompute import recompute as recompute_branch
from .recompute import recording

RELATIONS = ("star", "clique", "concatenation")


class PatchwiseAttention(nn.Module):
    """x (N, in_planes, H, W) -> y (N, out_planes, Ho, Wo), Eq. (4) with the relation of Eq. (5).

    ``recompute``: when autograd records (training), keep only phi(x), psi(x) and alpha of the weight
    branch for the backward pass and run the branch again there to rebuild the rest (the unfolded
    footprints (N, R, K*K, L), the relation, gamma's intermediates): less memory for one more
    forward of the branch, with the same outputs, gradients and batch-norm running statistics
    (:mod:`.recompute`). No effect under ``torch.no_grad`` or in inference.

    Refused when the layer is built: sizes that are not positive ints, an even ``kernel_size``,
    ``recompute`` that is not a bool. At the forward: an input that is not (N, in_planes, H, W).
    """

    def __init__(self, in_planes: int, rel_planes: int, out_planes: int, share_planes: int = 8,
                 kernel_size: int = 7, stride: int = 1, dilation: int = 1,
                 relation: str = "concatenation", pad_mode: str = "reflect", backend: str = "auto",
                 recompute: bool = False, gamma_layers: int = 2):
        super().__init__()
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS} for patchwise attention, "
                             f"got {relation!r}")
        check_footprint(kernel_size, out_planes, share_planes)
        check_int("in_planes", in_planes)
        check_int("rel_planes", rel_planes)
        check_bool("recompute", recompute)
        self.relation, self.taps, self.recompute = relation, kernel_size * kernel_size, recompute
        self.conv1 = nn.Conv2d(in_planes, rel_planes, kernel_size=1)      # phi
        self.conv2 = nn.Conv2d(in_planes, rel_planes, kernel_size=1)      # psi
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)      # beta
        width = {"star": self.taps, "clique": self.taps * self.taps,
                 "concatenation": rel_planes * (self.taps + 1)}[relation]
        weights = out_planes // share_planes
        self.conv_w = gamma(width, weights, self.taps * weights, gamma_layers)   # depth: see .gamma
        footprint = dict(kernel_size=kernel_size, stride=stride, dilation=dilation,
                         pad_mode=pad_mode, backend=backend)
        self.unfold = Unfold(**footprint)
        self.aggregation = Aggregation(**footprint)

    def delta(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """phi(x), psi(x) (N, R, H, W) -> the relation (N, channels, 1, L)."""
        n = x1.shape[0]
        xi, x1j = self.unfold(x1)                                   # (N, R, 1, L), (N, R, K*K, L)
        _, x2j = self.unfold(x2)                                    # (N, R, K*K, L)
        if self.relation == "star":
            return (xi * x2j).sum(dim=1).unsqueeze(2)               # (N, K*K, 1, L)
        if self.relation == "clique":
            pairs = torch.einsum("nrjl,nrkl->njkl", x1j, x2j)       # (N, K*K, K*K, L)
            return pairs.reshape(n, -1, 1, pairs.shape[-1])
        return torch.cat([xi, x2j.reshape(n, -1, 1, x2j.shape[-1])], dim=1)   # concatenation

    def weights(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """phi(x), psi(x) (N, R, H, W) -> alpha (N, out/share, K*K, L) = gamma(delta(x_R(i))),
        the K*K weight vectors of each footprint, not normalised."""
        alpha = self.conv_w(self.delta(x1, x2))                     # (N, K*K * out/share, 1, L)
        return alpha.view(x1.shape[0], -1, self.taps, alpha.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.conv1.in_channels)
        x1, x2, x3 = one_pass(x, (self.conv1, self.conv2, self.conv3))   # phi, psi, beta: one convolution
        if self.recompute and recording(self, x1, x2):
            alpha = recompute_branch(self, self.weights, x1, x2)
        else:
            alpha = self.weights(x1, x2)                            # (N, out/share, K*K, L)
        return self.aggregation(x3, alpha)                          # (N, out, Ho, Wo)
