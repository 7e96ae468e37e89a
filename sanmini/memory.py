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

The profiler talks on the process's stderr, below Python (so ``warnings`` filters do not reach it):
its tracing library, Kineto, writes a line at every start and stop (``USDT: ... profiler_start``)
and, with a CUDA build of torch on a machine without a GPU driver, an error from counting GPUs
(``gpuGetDeviceCount failed with code 35``, CUDA's "insufficient driver"), even when only CPU
activities are profiled; and torch's CPU allocator warns when a call frees memory allocated before
the profiler started (``Memory block of unknown size was allocated before the profiling
started``), as a training step does with the previous step's gradients. None of it says anything
about the measurement. :func:`quiet_profiler` silences all three, and :func:`peak_bytes` profiles
under it.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

__all__ = ["peak_bytes", "quiet_profiler"]

# Kineto logs nothing at a level above its highest, USDT (5 in torch 2.14's Kineto, whose other
# levels are VERBOSE 0 to ERROR 4). c10, torch's C++ core, logs at INFO 0, WARNING 1, ERROR 2, FATAL 3.
_KINETO_SILENT = "6"
_C10_ERROR = 2


@lru_cache(maxsize=None)
def _c10_log_level() -> ctypes.c_int | None:
    """c10's minimum log level, the variable that ``TORCH_CPP_LOG_LEVEL`` sets when torch is
    imported (and only then), or None where this build of torch does not export it."""
    for name in ("libc10.so", "libc10.dylib"):
        path = Path(torch.__file__).parent / "lib" / name
        if path.exists():
            try:
                return ctypes.c_int.in_dll(ctypes.CDLL(str(path)), "FLAGS_caffe2_log_level")
            except (OSError, ValueError):
                return None
    return None


@contextmanager
def quiet_profiler() -> Iterator[None]:
    """Silence the PyTorch profiler's log lines on stderr while the block runs.

    Two settings, each left alone if its environment variable is set (so a user who asks for the
    logs gets them):

    * ``KINETO_LOG_LEVEL`` above Kineto's highest level, set for the block and restored after.
      Kineto reads it once, when the first profiler of the process starts: start the process's
      first profiler inside this block, or set the variable before Python starts. Kineto then
      stays silent for the rest of the process, its own errors included;
    * c10's minimum log level raised to ERROR for the block, and restored after: the runtime form
      of ``TORCH_CPP_LOG_LEVEL=ERROR``, which torch reads only when it is imported. It hides the
      allocator's warning, and any other c10 warning logged while the block runs.

    Python's exceptions and warnings are not affected.
    """
    restore_env = "KINETO_LOG_LEVEL" not in os.environ
    if restore_env:
        os.environ["KINETO_LOG_LEVEL"] = _KINETO_SILENT
    level = None if "TORCH_CPP_LOG_LEVEL" in os.environ else _c10_log_level()
    previous = None if level is None else level.value
    if level is not None:
        level.value = max(previous, _C10_ERROR)
    try:
        yield
    finally:
        if level is not None:
            level.value = previous
        if restore_env:
            os.environ.pop("KINETO_LOG_LEVEL", None)


def peak_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """The most bytes held at once by torch allocations on ``device`` made while ``fn()`` runs.

    ``device``: ``"cpu"`` (read from the profiler's allocation records, the profiler under
    :func:`quiet_profiler`) or a CUDA device (from the CUDA allocator's peak statistics). The result
    of ``fn`` is dropped after the measurement.
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
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [e for e in prof.profiler.kineto_results.events()
               if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    records.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for record in records:
        held += record.nbytes()
        peak = max(peak, held)
    return peak
