"""The SAN operators as ``nn.Module`` layers, so that a model can set its backend in one place
(:func:`set_backend`) and a FLOP counter can see every call (:func:`sanmini.models.count_flops`).

The footprint helpers :func:`centre_of` and :func:`footprint_of` give x_i and the x_j of R(i) as
columns, for the relation functions that are not a subtraction (summation, concatenation, ...);
they are the unfold of the ``"torch"`` backend, the specification of :mod:`sanmini.ops`.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..ops import reference
from ..ops.geometry import make_window
from .checks import check_choice, check_int
from .pool import MaxPool2x2


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H and W at stride 1 for an odd footprint, as the reference SAN uses."""
    return (dilation * (kernel_size - 1) + 1) // 2


class _Footprint(nn.Module):
    """Holds the footprint arguments and the backend of one operator."""

    def __init__(self, kernel_size: int, stride: int = 1, padding: int | None = None,
                 dilation: int = 1, pad_mode: str = "reflect", backend: str = "auto"):
        super().__init__()
        check_int("kernel_size", kernel_size)
        check_int("stride", stride)
        check_int("dilation", dilation)
        if padding is not None:
            check_int("padding", padding, minimum=0)
        check_choice("pad_mode", pad_mode, ops.geometry.PAD_MODES)
        check_choice("backend", backend, ops.geometry.BACKENDS)
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding = same_padding(kernel_size, dilation) if padding is None else padding
        self.pad_mode, self.backend = pad_mode, backend

    def _kw(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    pad_mode=self.pad_mode, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, pad_mode={self.pad_mode!r}, backend={self.backend!r}")


class Aggregation(_Footprint):
    """(x (N, C, H, W), weight (N, Cw, K*K, Ho*Wo)) -> (N, C, Ho, Wo); :func:`sanmini.ops.aggregation`."""

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return ops.aggregation(x, weight, self.kernel_size, **self._kw())


class Subtraction(_Footprint):
    """x (N, C, H, W) -> (N, C, K*K, Ho*Wo), x_i - x_j; :func:`sanmini.ops.subtraction`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.subtraction(x, self.kernel_size, **self._kw())


class Subtraction2(_Footprint):
    """(x1, x2 (N, C, H, W)) -> (N, C, K*K, Ho*Wo), x1_i - x2_j; :func:`sanmini.ops.subtraction2`."""

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return ops.subtraction2(x1, x2, self.kernel_size, **self._kw())


class Unfold(_Footprint):
    """x (N, C, H, W) -> (centre (N, C, 1, L), footprint (N, C, K*K, L)): x_i and the x_j of R(i)."""

    def forward(self, x: torch.Tensor):
        win = make_window(x, self.kernel_size, self.stride, self.padding, self.dilation, self.pad_mode)
        return reference.centre(x, win).unsqueeze(2), reference.unfold(x, win)


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Run every SAN operator and SAN max-pool (:class:`sanmini.nn.MaxPool2x2`) of ``model`` on ``backend`` (``"auto"``, ``"torch"``, ``"cpu"``, ``"cuda"``)."""
    if backend not in ops.geometry.BACKENDS:
        raise ValueError(f"backend must be one of {ops.geometry.BACKENDS}, got {backend!r}")
    for module in model.modules():
        if isinstance(module, (_Footprint, MaxPool2x2)):
            module.backend = backend
    return model
