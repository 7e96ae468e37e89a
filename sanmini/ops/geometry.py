"""The footprint R(i) of the SAN operators, and the checks every operator runs before any kernel.

A SAN operator reads, for each output position p = (ho, wo), the K x K footprint

    window_j(p) = (ho * stride - padding + ki * dilation,  wo * stride - padding + kj * dilation),
    j = ki * K + kj,  ki, kj in 0..K-1,

of an input padded by ``padding`` on every side (zeros, or a mirror image for ``"reflect"``). The
centre of the footprint is tap ((K - 1) // 2, (K - 1) // 2). The output size follows the
convolution rule ``(H + 2 * padding - dilation * (K - 1) - 1) // stride + 1``.

This module holds that geometry (:class:`Window`) and the argument checks shared by every backend,
so that a wrong argument gets a clear ``TypeError`` or ``ValueError`` naming it, never a wrong
answer or a crash inside a kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PAD_MODES = ("zeros", "reflect")
BACKENDS = ("auto", "torch", "cpu", "cuda")


def output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: the convolution rule."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


@dataclass(frozen=True)
class Window:
    """Geometry of one operator call: input (H, W), footprint K, stride, padding, dilation, pad mode."""

    height: int
    width: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    pad_mode: str

    @property
    def out_height(self) -> int:
        return output_size(self.height, self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def out_width(self) -> int:
        return output_size(self.width, self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def taps(self) -> int:
        """K * K, the number of positions j in the footprint."""
        return self.kernel_size * self.kernel_size

    @property
    def centre(self) -> int:
        """Index along one axis of the footprint's centre tap, (K - 1) // 2."""
        return (self.kernel_size - 1) // 2

    @property
    def reflect(self) -> bool:
        return self.pad_mode == "reflect"


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def check_tensor(name: str, t, ndim: int) -> None:
    """``t`` is a floating-point tensor with ``ndim`` dimensions."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def check_same(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> None:
    """All tensors share one device and one dtype."""
    first, *rest = tensors
    for name, t in zip(names[1:], rest):
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {names[0]} is on {first.device}; "
                             "move them to one device")
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {names[0]} has dtype {first.dtype}; "
                            "cast them to one dtype (or run under torch.autocast)")


def make_window(x: torch.Tensor, kernel_size, stride, padding, dilation, pad_mode, name: str = "x") -> Window:
    """Check the footprint arguments against the input ``x`` (N, C, H, W) and return its :class:`Window`."""
    _check_int("kernel_size", kernel_size, 1)
    _check_int("stride", stride, 1)
    _check_int("padding", padding, 0)
    _check_int("dilation", dilation, 1)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    height, width = x.shape[-2:]
    if pad_mode == "reflect" and (padding >= height or padding >= width):
        raise ValueError(f"padding={padding} with pad_mode='reflect' must be smaller than the input "
                         f"size of {name}, got H={height}, W={width}")
    window = Window(height, width, kernel_size, stride, padding, dilation, pad_mode)
    if window.out_height < 1 or window.out_width < 1:
        raise ValueError(
            f"the output would be empty: {name} of size H={height}, W={width} with kernel_size="
            f"{kernel_size}, dilation={dilation}, padding={padding} gives Ho={window.out_height}, "
            f"Wo={window.out_width}; use a smaller kernel_size or dilation, or more padding")
    return window
