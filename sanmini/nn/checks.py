"""Argument checks shared by the layers and models: a wrong size or setting is refused when the
module is built, with a message naming the argument, never at its first forward."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` must be an int (not a bool, float or string) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_ints(name: str, values, length: int, minimum: int = 1) -> tuple:
    """A sequence of ``length`` ints, each at least ``minimum``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != length:
        raise ValueError(f"{name} must give {length} values, one per stage, got {values!r}")
    return tuple(check_int(f"{name}[{k}]", v, minimum) for k, v in enumerate(values))


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` must be True or False: a string such as ``"no"`` would otherwise count as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_input(x, channels: int, name: str = "x") -> None:
    """A layer's input must be a batch of images (N, channels, H, W), checked at the forward so that a
    single image (C, H, W) gets this line rather than an error from deep inside an operator."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, {channels}, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        hint = " (one image? add the batch dimension: x[None])" if x.dim() == 3 and x.shape[0] == channels else ""
        raise ValueError(f"{name} must have shape (N, {channels}, H, W), got {tuple(x.shape)}{hint}")
