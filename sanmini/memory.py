"""Peak memory of a call: the most bytes that torch's allocations held at once while it ran.

Training a SAN is bound by memory as much as by time (the weight branch's (N, C, K*K, L) tensors),
so the benchmarks, the book and the tests measure it, all with :func:`peak_bytes`.

* CUDA: torch's allocator counts it itself (``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``); the bytes allocated before the call are subtracted.
* CPU: nothing in torch counts it, and torch's CPU allocator is invisible to ``tracemalloc``. The
  PyTorch profiler with ``profile_memory=True`` records every allocation and every free of torch's
  CPU allocator as a signed byte count with a timestamp. The raw records are read from the
  profiler's kineto results (events named ``"[memory]"``), sorted by time; their running sum is
  the bytes held, and its maximum the peak. (``prof.events()`` is not enough: it folds each
  allocation made inside an operator into that operator's net total.)

Either way only allocations made during the call count: tensors that exist before it (weights, the
batch) do not, and tensors it returns count as held.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def peak_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """The most bytes held at once by torch allocations on ``device`` made while ``fn()`` runs.

    ``device``: ``"cpu"`` (read from the profiler's allocation records) or a CUDA device (from the
    CUDA allocator's peak statistics). The result of ``fn`` is dropped after the measurement.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {str(device)!r}")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [e for e in prof.profiler.kineto_results.events()
               if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    records.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for record in records:
        held += record.nbytes()
        peak = max(peak, held)
    return peak
