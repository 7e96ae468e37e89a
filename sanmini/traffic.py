"""Memory traffic of a call, estimated operator by operator: the bytes its operators read and write.

A SAN's weight branch computes little per element of its (N, C, K*K, L) tensors: a batch norm, a
ReLU, a 1 x 1 map of a few channels, a softmax. Run as separate operators, each reads its inputs
from memory and writes its result back, so at the book's scale a SAN training step is bound by
moving bytes more than by multiply-adds (``bench/book_scale.py``, chapter 8). :func:`traffic_bytes`
counts those bytes, so that a network's traffic can be read per multiply-add beside another's.

How it counts (:class:`TrafficCounter`, a ``TorchDispatchMode``): every call of an operator that
reaches torch's dispatcher counts each distinct tensor among its arguments and results once (a
tensor both read and written, as by an in-place ``relu_``, once), at the bytes its elements span:
a broadcast dimension (stride 0) counts one element, not its size. Views (results that alias an
argument without writing it: ``view``, ``expand``, ``transpose``, ``detach``, ...) and allocations
(``empty``) move no data and are skipped. A custom operator (the SAN operators of
:mod:`sanmini.ops`) counts its own arguments and results; what its kernels do inside is not seen.

It is an estimate, not a measurement: a tensor that stays in a cache between two operators is
counted at both, an operator that reads an input twice (torch's CPU batch norm reads its input for
the statistics and again to normalise) once, and the write-allocate reads of a CPU are not counted.
The counts depend only on the operators called and the tensors' shapes, dtypes and strides, not
on the machine or its load, so they are the same on every run.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TrafficCounter", "traffic_bytes", "spanned_bytes"]

ALLOCATIONS = frozenset({"aten::empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty",
                         "aten::new_empty_strided"})
"""Operators that allocate without writing: they move no data."""


def spanned_bytes(t: torch.Tensor) -> int:
    """The bytes of the distinct elements a tensor's view covers: the product of its sizes over
    the dimensions of non-zero stride, times the element size (an ``expand``-ed dimension counts
    once)."""
    count = 1
    for size, stride in zip(t.shape, t.stride()):
        count *= size if stride != 0 else 1
    return count * t.element_size() if t.numel() else 0


class TrafficCounter(TorchDispatchMode):
    """While active, adds up the bytes each operator call reads and writes, by operator name
    (``"aten::native_batch_norm"``, ``"sanmini::aggregation"``), in the dict ``bytes``, and the
    calls counted, in ``calls``. See the module's docstring for what counts."""

    def __init__(self):
        super().__init__()
        self.bytes: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        aliases = [r.alias_info for r in schema.returns if r.alias_info is not None]
        if schema.name in ALLOCATIONS or (aliases and not any(a.is_write for a in aliases)):
            return out
        seen, total = set(), 0
        for t in pytree.tree_leaves((args, kwargs, out)):
            if not isinstance(t, torch.Tensor):
                continue
            key = (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype)
            if key not in seen:
                seen.add(key)
                total += spanned_bytes(t)
        self.bytes[schema.name] = self.bytes.get(schema.name, 0) + total
        self.calls[schema.name] = self.calls.get(schema.name, 0) + 1
        return out


def traffic_bytes(fn: Callable[[], object]) -> dict[str, int]:
    """Call ``fn()`` once and return the bytes its operators read and wrote, by operator name
    (:class:`TrafficCounter`), largest first. ``sum(...values())`` is the call's estimated traffic."""
    if not callable(fn):
        raise TypeError(f"fn must be a callable of no arguments, got {type(fn).__name__}")
    counter = TrafficCounter()
    with counter:
        fn()
    return dict(sorted(counter.bytes.items(), key=lambda kv: -kv[1]))
