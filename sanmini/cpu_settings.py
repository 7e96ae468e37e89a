"""CPU settings that change how fast torch computes on a CPU, never what a model is.

- :func:`onednn` and :func:`without_onednn`: run CPU convolutions with or without oneDNN
  (``torch.backends.mkldnn``) inside a block. oneDNN's 1x1 convolutions are slow on some CPUs for
  the few channels and many columns of SAN's (N, C, K*K, H*W) weight-branch tensors; PyTorch's own
  kernels then run them as matrix products. Both compute the same function, up to rounding.
- :func:`has_bfloat16`: whether this CPU has bfloat16 instructions, so that bfloat16 autocast is
  native rather than converted in software.

The book fixes these settings per chapter and states them; it never picks one from a timing.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["onednn", "without_onednn", "has_bfloat16"]


@contextmanager
def onednn(enabled: bool):
    """Run CPU convolutions with oneDNN (mkldnn) on (``enabled=True``) or off inside the block;
    the previous setting is restored on exit."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def without_onednn():
    """``onednn(False)``: CPU convolutions on PyTorch's own kernels inside the block."""
    return onednn(False)


def has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), as torch detects them.
    True where this torch cannot tell."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is None or probe() for probe in probes)
