"""What the benchmarks share: timing, CPU peak memory, the run's header, and bench/RESULTS.md.

- :func:`median_seconds`: median wall seconds of calls that take turns;
- :func:`verify_cpu_peak_method`: checks :func:`sanmini.memory.peak_bytes`, the most bytes held at
  once by torch CPU allocations made while a call runs (from the PyTorch profiler's allocation
  records), on allocations of known size before a run trusts it;
- :func:`header`: date, machine, commit, the run's own lines (shapes, command) and load average;
- :func:`write_section`: replace one ``## `` section of bench/RESULTS.md and keep the others.
"""
from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from sanmini.memory import peak_bytes
from sanmini.cpu_settings import has_bfloat16 as cpu_has_bfloat16

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
PREAMBLE = ("# Benchmarks\n\nWritten by `python bench/ops.py --write` (the operators), "
            "`python bench/train_step.py --write` (training steps), `python bench/fused_passes.py "
            "--write` (the fused weight branch, pass by pass), `python bench/fused_parts.py --write` (its "
            "third forward pass, part by part) and `python bench/book_scale.py --write` "
            "(training steps at the book's scale, per multiply-add); see each script's docstring for "
            "what is measured and how.")
MIB = 2 ** 20


def set_threads(threads: int) -> None:
    """``threads`` for torch's intra-op pool and for Numba's parallel loops."""
    import numba
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)


def threads_flag() -> str:
    """`` --threads N`` for a command line when the run did not use one thread per core."""
    return f" --threads {torch.get_num_threads()}" if torch.get_num_threads() != os.cpu_count() else ""


def median_seconds(calls: dict, repeats: int) -> dict[str, float]:
    """Median wall seconds of each call; the calls take turns, so that a load from other processes
    on the machine falls on all of them alike rather than on whichever runs while it lasts."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def verify_cpu_peak_method() -> None:
    """Check :func:`sanmini.memory.peak_bytes` on allocations of known size before trusting it."""
    def one():
        return torch.empty(1000, 1000)                         # 4_000_000 bytes, kept

    def overlapping():
        a = torch.empty(1000, 1000)                            # 4_000_000
        b = torch.empty(500, 1000)                             # + 2_000_000 -> 6_000_000 held
        del a
        c = torch.empty(1200, 1000)                            # 2_000_000 + 4_800_000 = 6_800_000
        return b, c

    for fn, expected in ((one, 4_000_000), (overlapping, 6_800_000)):
        got = peak_bytes(fn)
        if got != expected:
            sys.exit(f"peak-memory method is off: expected {expected} bytes, measured {got}; "
                     "this torch's profiler does not record allocations as assumed")


def run_text(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name, the vector instructions torch's CPU kernels use on it (its "CPU
    capability": AVX2, AVX512, ...) and whether it has bfloat16 instructions (without them torch
    converts bfloat16 in software, and autocast to it is several times slower than float32)."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    name = match.group(1).strip() if match else platform.processor() or "unknown CPU"
    return (f"{name} ({torch.backends.cpu.get_cpu_capability()}, "
            f"{'with' if cpu_has_bfloat16() else 'no'} bfloat16 instructions)")


def load_text(averages) -> str:
    return ", ".join(f"{a:.2f}" for a in averages)


def header(device_line: str, lines: list[str], load_at_start) -> str:
    """The run's bullet list: date, machine (``device_line``, versions), commit, the bench's own
    ``lines`` (shapes, repeats, command), and the load average at the start and end of the run."""
    import numba
    changed = run_text("git", "status", "--porcelain", "--untracked-files=no", "--", "sanmini")
    dirty = " (sanmini/ has uncommitted changes)" if changed else ""
    return "\n".join([
        f"- Date: {run_text('date', '-u')}",
        f"- Machine: {device_line}; torch {torch.__version__}, numba {numba.__version__}, "
        f"Python {platform.python_version()}",
        f"- Commit: {run_text('git', 'rev-parse', '--short', 'HEAD')}{dirty}",
        *lines,
        f"- Load average (1, 5, 15 min) at the start / end of the run: {load_text(load_at_start)} / "
        f"{load_text(os.getloadavg())} (other processes on the machine slow every timing)",
    ])


def write_section(heading: str, section: str, defaults: dict[str, str]) -> None:
    """Put ``section`` (which starts with the line ``heading``) in place of RESULTS.md's section of
    that heading; keep every other ``## `` section as it is, in its place. Sections the file lacks
    go after the others: ``defaults`` (heading -> text, e.g. a "not measured" placeholder) in their
    order, then ``section`` if it is not one of them."""
    sections = {}
    if RESULTS.exists():
        for block in re.split(r"(?m)^(?=## )", RESULTS.read_text()):
            if block.startswith("## "):
                sections[block.splitlines()[0]] = block.strip()
    for title, text in defaults.items():
        sections.setdefault(title, text)
    sections[heading] = section
    RESULTS.write_text(PREAMBLE + "\n\n" + "\n\n".join(sections.values()) + "\n")
