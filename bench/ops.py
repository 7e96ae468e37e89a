"""Benchmark of the SAN operators: a compiled backend against the plain-torch reference, fwd+bwd.

What is measured
----------------
For ``aggregation`` and ``subtraction2`` (float32, stride 1, dilation 1, padding (K-1)//2, zero and
reflect padding) at the five SAN10 stage shapes of a 224 x 224 input,

    x (B, 16, 112, 112) K=3, (B, 64, 56, 56) K=7, (B, 128, 28, 28) K=7, (B, 256, 14, 14) K=7,
    (B, 512, 7, 7) K=7,  weight (B, C/8, K*K, H*W) for aggregation,  x1 = x2 shape for subtraction2,

one *measured call* is forward + backward: ``y = op(inputs)``, then
``torch.autograd.grad(y, inputs, grad_y)`` with a random upstream gradient ``grad_y`` (gradients
w.r.t. all inputs). The inputs and ``grad_y`` are made before the measured call.

Each (op, padding, shape) is run on the compiled backend and on ``backend="torch"`` (the baseline)
in the same process. Every backend is first run once outside the measurement (Numba compiles on
its first call), and that warm-up result is checked against the torch backend (output and all
gradients), so the bench never times a wrong answer.

CPU mode (the default when no GPU is present): backend ``"cpu"`` (Numba) against ``"torch"``.

* Time: ``time.perf_counter`` around the measured call; the median of ``--repeats`` calls.
* Peak memory: the most bytes held at once by allocations made *during* the measured call
  (output, gradients and every temporary; the inputs and ``grad_y``, made before, are not counted),
  by :func:`sanmini.memory.peak_bytes`, which reads torch's CPU allocation records from the PyTorch
  profiler (its docstring says how and why); the bench checks it on known allocations first and
  stops if it is off by a byte. Both backends allocate through torch: the ``"cpu"`` backend makes
  its outputs and gradients with torch, and its Numba kernels write into them through
  ``Tensor.numpy()`` views (their only own arrays are a few planes of scratch per thread, which
  this does not see). Peak memory is measured on a separate, profiled call, so the profiler does
  not slow the timed calls.

GPU mode (``torch.cuda.is_available()`` and Numba's CUDA target usable; batch 32 by default):
backend ``"cuda"`` against ``"torch"``, on CUDA tensors.

* Device time: CUDA events recorded before and after the measured call; wall time:
  ``perf_counter`` around the call and a ``torch.cuda.synchronize()``; medians of ``--repeats``.
* Peak memory: :func:`sanmini.memory.peak_bytes` on CUDA, ``torch.cuda.max_memory_allocated()``
  after ``reset_peak_memory_stats()`` minus the memory allocated before the call (both backends
  allocate through torch's CUDA allocator).
* Memory-traffic bound: the bytes of every tensor of the call moved once (inputs, output, upstream
  gradient, input gradients) divided by the device-to-device copy bandwidth measured here
  (``2 * bytes / time`` of a 512 MiB ``Tensor.copy_``, read plus write). No fwd+bwd can beat it.

A per-kernel breakdown (CPU mode) times each Numba kernel of the ``"cpu"`` backend on its own
(aggregation forward, input gradient and weight gradient; subtraction forward and backward) and the
torch backend's forward and backward, at every stage shape with zero padding, to show which kernel
dominates.

Noise: both backends run parallel loops over all cores (torch's OpenMP, Numba's threading layer),
and a loop is as slow as its slowest thread, so other processes on the machine slow them a lot,
and not alike (on the 2-core machine of RESULTS.md a load average of 4 to 6 made both backends
several times slower, the torch backend more). The backends take turns call by call, and the
load average at the start and end of the run is written with the results; trust a run on a quiet
machine (load average well below the core count), or compare one thread each (``--threads 1``).

Targets (from the issue): the compiled backend at least 3x faster than ``"torch"`` and at most half
its peak memory, forward + backward.

Usage::

    python bench/ops.py                 # print the tables
    python bench/ops.py --write         # ... and update bench/RESULTS.md (this mode's section)
    python bench/ops.py --batch 4 --repeats 3 --no-breakdown
    python bench/ops.py --threads 1     # one thread each: less disturbed by a busy machine
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):   # sanmini from this checkout (installed or not), bench/common.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from common import (MIB, RESULTS, ROOT, cpu_model, header, median_seconds,  # noqa: E402
                    set_threads, threads_flag, verify_cpu_peak_method, write_section)
from sanmini import ops  # noqa: E402
from sanmini.memory import peak_bytes  # noqa: E402
from sanmini.ops import reference  # noqa: E402
from sanmini.ops.geometry import Window  # noqa: E402

CPU_HEADING = "## CPU: sanmini.ops, cpu vs torch, forward+backward"
GPU_HEADING = "## GPU: sanmini.ops, cuda vs torch, forward+backward"
GPU_PLACEHOLDER = ("Not measured yet: no GPU was available in the session that wrote this (the bench "
                   "measures cuda vs torch with CUDA events when run on a GPU).")

# SAN10 stage shapes at a 224 x 224 input: (channels C of the SAM, height = width, kernel size K).
STAGES = [(16, 112, 3), (64, 56, 7), (128, 28, 7), (256, 14, 7), (512, 7, 7)]
SHARE_PLANES = 8  # weight channels Cw = C / 8
OPS = ("aggregation", "subtraction2")
PAD_MODES = ("zeros", "reflect")
SPEEDUP_TARGET = 3.0
MEMORY_TARGET = 0.5


@dataclass(frozen=True)
class Case:
    op: str
    pad_mode: str
    batch: int
    channels: int
    size: int
    kernel_size: int

    @property
    def padding(self) -> int:
        return (self.kernel_size - 1) // 2

    @property
    def window(self) -> Window:
        return Window(self.size, self.size, self.kernel_size, 1, self.padding, 1, self.pad_mode)

    @property
    def x_shape(self) -> str:
        return f"({self.batch}, {self.channels}, {self.size}, {self.size})"

    def inputs(self, device: str) -> tuple[torch.Tensor, ...]:
        """The operator's tensor inputs (requiring grad), seeded so both backends get the same."""
        gen = torch.Generator().manual_seed(0)
        x_shape = (self.batch, self.channels, self.size, self.size)
        if self.op == "aggregation":
            win = self.window
            w_shape = (self.batch, self.channels // SHARE_PLANES, win.taps,
                       win.out_height * win.out_width)
            tensors = torch.randn(x_shape, generator=gen), torch.randn(w_shape, generator=gen)
        else:
            tensors = torch.randn(x_shape, generator=gen), torch.randn(x_shape, generator=gen)
        return tuple(t.to(device).requires_grad_() for t in tensors)

    def forward(self, inputs, backend: str) -> torch.Tensor:
        fn = getattr(ops, self.op)
        return fn(*inputs, self.kernel_size, stride=1, padding=self.padding, dilation=1,
                  pad_mode=self.pad_mode, backend=backend)


def forward_backward(case: Case, backend: str, inputs, grad_y):
    """The measured call: forward, then the gradients of <y, grad_y> w.r.t. all inputs."""
    y = case.forward(inputs, backend)
    grads = torch.autograd.grad(y, inputs, grad_y)
    return y, grads


def upstream_grad(case: Case, inputs) -> torch.Tensor:
    with torch.no_grad():
        shape = case.forward(inputs, "torch").shape
    gen = torch.Generator().manual_seed(1)
    return torch.randn(shape, generator=gen).to(inputs[0].device)


def check_against_torch(case: Case, backend: str, inputs, grad_y) -> None:
    """The compiled backend's output and gradients equal the torch backend's."""
    expected = forward_backward(case, "torch", inputs, grad_y)
    actual = forward_backward(case, backend, inputs, grad_y)
    for name, a, e in zip(("y", *(f"grad {i}" for i in range(len(inputs)))),
                          (actual[0], *actual[1]), (expected[0], *expected[1])):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{case} {backend} {name}: {m}")


# --- CPU measurements --------------------------------------------------------------------------

@dataclass
class Row:
    case: Case
    base_s: float
    fast_s: float
    base_peak: int
    fast_peak: int

    @property
    def speedup(self) -> float:
        return self.base_s / self.fast_s

    @property
    def memory_ratio(self) -> float:
        return self.fast_peak / self.base_peak

    @property
    def meets_time(self) -> bool:
        return self.speedup >= SPEEDUP_TARGET

    @property
    def meets_memory(self) -> bool:
        return self.memory_ratio <= MEMORY_TARGET


def measure_cpu(case: Case, repeats: int) -> Row:
    inputs = case.inputs("cpu")
    grad_y = upstream_grad(case, inputs)
    check_against_torch(case, "cpu", inputs, grad_y)           # also the warm-up of both backends
    calls = {backend: (lambda b=backend: forward_backward(case, b, inputs, grad_y))
             for backend in ("torch", "cpu")}
    times = median_seconds(calls, repeats)
    peaks = {backend: peak_bytes(call) for backend, call in calls.items()}
    return Row(case, times["torch"], times["cpu"], peaks["torch"], peaks["cpu"])


def cpu_breakdown(batch: int, repeats: int) -> list[tuple[str, dict[str, float]]]:
    """Seconds per kernel of the "cpu" backend, and per pass of "torch", zero padding."""
    from sanmini.ops import cpu as kernels

    rows = []
    for channels, size, k in STAGES:
        agg = Case("aggregation", "zeros", batch, channels, size, k)
        win = agg.window
        x, weight = (t.detach() for t in agg.inputs("cpu"))
        grad_y = upstream_grad(agg, (x, weight))
        x2 = torch.randn_like(x)
        sub_grad = torch.randn(batch, channels, win.taps, win.out_height * win.out_width)

        def cols(t):  # (N, C, K*K, Ho*Wo) viewed as (N, C, K*K, Ho, Wo), as the kernels take it
            return t.view(*t.shape[:3], win.out_height, win.out_width).numpy()

        scalars = (k, 1, win.padding, 1, win.reflect, np.float32(0.0))
        y, gx, gw = torch.empty_like(grad_y), torch.empty_like(x), torch.empty_like(weight)
        sub_y, gx1, gx2 = torch.empty_like(sub_grad), torch.empty_like(x), torch.empty_like(x)
        calls = {
            "cpu agg fwd": lambda: kernels.aggregation_forward(
                x.numpy(), cols(weight), y.numpy(), *scalars),
            "cpu agg input-grad": lambda: kernels.aggregation_input_grad(
                cols(weight), grad_y.numpy(), gx.numpy(), *scalars),
            "cpu agg weight-grad": lambda: kernels.aggregation_weight_grad(
                x.numpy(), grad_y.numpy(), cols(gw), *scalars),
            "cpu sub fwd": lambda: kernels.subtraction_forward(
                x.numpy(), x2.numpy(), cols(sub_y), *scalars),
            "cpu sub bwd": lambda: kernels.subtraction_backward(
                cols(sub_grad), gx1.numpy(), gx2.numpy(), *scalars),
            "torch agg fwd": lambda: reference.aggregation_forward(x, weight, win),
            "torch agg bwd": lambda: reference.aggregation_backward(grad_y, x, weight, win),
            "torch sub fwd": lambda: reference.subtraction2_forward(x, x2, win),
            "torch sub bwd": lambda: reference.subtraction2_backward(sub_grad, x.shape, win),
            # What either backend pays for a new (N, C, K*K, Ho*Wo) output: memory fresh from
            # the system, written for the first time (page faults), not the kernels' work.
            "new sub output": lambda: torch.empty_like(sub_grad).fill_(0.0),
        }
        for call in calls.values():
            call()                                             # warm-up (compile)
        rows.append((f"{agg.x_shape} K={k}", median_seconds(calls, repeats)))
    return rows


# --- GPU measurements --------------------------------------------------------------------------

def copy_bandwidth(nbytes: int = 512 * MIB) -> float:
    """Device-to-device copy bandwidth, bytes per second (read plus write)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    seconds = []
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        seconds.append(start.elapsed_time(end) / 1e3)
    return 2 * nbytes / statistics.median(seconds)


def measure_gpu(case: Case, repeats: int, bandwidth: float) -> dict:
    inputs = case.inputs("cuda")
    grad_y = upstream_grad(case, inputs)
    check_against_torch(case, "cuda", inputs, grad_y)          # also the warm-up of both backends
    y, grads = forward_backward(case, "torch", inputs, grad_y)
    traffic = sum(t.numel() * t.element_size() for t in (*inputs, y, grad_y, *grads))
    del y, grads
    result = {"case": case, "bound_s": traffic / bandwidth}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for backend in ("torch", "cuda"):
        device_s, wall_s = [], []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            start.record()
            forward_backward(case, backend, inputs, grad_y)
            end.record()
            torch.cuda.synchronize()
            wall_s.append(time.perf_counter() - t0)
            device_s.append(start.elapsed_time(end) / 1e3)
        peak = peak_bytes(lambda: forward_backward(case, backend, inputs, grad_y), "cuda")
        result[backend] = {"device_s": statistics.median(device_s),
                           "wall_s": statistics.median(wall_s), "peak": peak}
    return result


# --- report ------------------------------------------------------------------------------------

def cpu_table(rows: list[Row]) -> str:
    lines = ["| op | pad | x shape | K | torch ms | cpu ms | torch/cpu time | torch peak MiB "
             "| cpu peak MiB | cpu/torch peak | >= 3x faster | <= 0.5 peak |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        c = r.case
        lines.append(
            f"| {c.op} | {c.pad_mode} | {c.x_shape} | {c.kernel_size} | {r.base_s * 1e3:.1f} "
            f"| {r.fast_s * 1e3:.1f} | {r.speedup:.2f}x | {r.base_peak / MIB:.1f} "
            f"| {r.fast_peak / MIB:.1f} | {r.memory_ratio:.2f} "
            f"| {'yes' if r.meets_time else '**no**'} | {'yes' if r.meets_memory else '**no**'} |")
    return "\n".join(lines)


def breakdown_table(rows) -> str:
    names = list(rows[0][1])
    lines = ["| x shape (zeros) | " + " | ".join(f"{n} ms" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for shape, seconds in rows:
        lines.append(f"| {shape} | " + " | ".join(f"{seconds[n] * 1e3:.1f}" for n in names) + " |")
    return "\n".join(lines)


def gpu_table(results: list[dict]) -> str:
    lines = ["| op | pad | x shape | K | torch device ms | cuda device ms | torch/cuda time "
             "| torch wall ms | cuda wall ms | traffic bound ms | cuda/bound | torch peak MiB "
             "| cuda peak MiB | cuda/torch peak |",
             "|---|---|---|---|" + "---:|" * 10]
    for r in results:
        c, t, f = r["case"], r["torch"], r["cuda"]
        lines.append(
            f"| {c.op} | {c.pad_mode} | {c.x_shape} | {c.kernel_size} | {t['device_s'] * 1e3:.2f} "
            f"| {f['device_s'] * 1e3:.2f} | {t['device_s'] / f['device_s']:.2f}x "
            f"| {t['wall_s'] * 1e3:.2f} | {f['wall_s'] * 1e3:.2f} | {r['bound_s'] * 1e3:.2f} "
            f"| {f['device_s'] / r['bound_s']:.1f} | {t['peak'] / MIB:.1f} | {f['peak'] / MIB:.1f} "
            f"| {f['peak'] / t['peak']:.2f} |")
    return "\n".join(lines)


def ops_header(batch: int, repeats: int, device_line: str, load_at_start) -> str:
    shapes = ", ".join(f"({batch}, {c}, {s}, {s}) K={k}" for c, s, k in STAGES)
    return header(device_line, [
        f"- Shapes (x; weight (B, C/8, K*K, H*W) for aggregation, x1 and x2 of x's shape for "
        f"subtraction2): {shapes}; float32, stride 1, dilation 1, padding (K-1)//2",
        f"- Median of {repeats} calls after a warm-up call, the backends taking turns; command: "
        f"`python bench/ops.py --batch {batch} --repeats {repeats}{threads_flag()} --write`",
    ], load_at_start)


def cpu_section(rows: list[Row], breakdown, batch: int, repeats: int, load_at_start) -> str:
    import numba
    machine = (f"{cpu_model()}, {torch.get_num_threads()} torch threads, "
               f"{numba.get_num_threads()} Numba threads, {os.cpu_count()} cores")
    misses = [r for r in rows if not (r.meets_time and r.meets_memory)]
    parts = [CPU_HEADING, "", ops_header(batch, repeats, machine, load_at_start), "",
             "One call = forward, then `torch.autograd.grad` of a random upstream gradient w.r.t. "
             "all inputs. Peak = most bytes held at once by torch allocations made during the "
             "call (PyTorch profiler memory records; inputs and upstream gradient made before "
             "the call are not counted). Targets: cpu >= 3x faster than torch and <= 0.5 of its "
             "peak memory.", "", cpu_table(rows), "",
             f"Both targets met on {len(rows) - len(misses)} of {len(rows)} rows."]
    parts += ["", *target_summary(rows)]
    if breakdown:
        parts += ["", "### Per-kernel breakdown (zero padding)", "",
                  "Each Numba kernel of the cpu backend timed on its own (no autograd, output "
                  "preallocated), the torch backend's forward and backward passes, and (new sub "
                  "output) a new tensor of the subtraction's output shape, allocated and "
                  "filled once.", "",
                  breakdown_table(breakdown), "", *breakdown_summary(breakdown)]
    return "\n".join(parts)


def target_summary(rows: list[Row]) -> list[str]:
    """One line per op and target: on how many rows it is missed, and the range of the ratio."""
    lines = []
    for op in OPS:
        mine = [r for r in rows if r.case.op == op]
        for what, missed, ratios, fmt in (
                ("time (>= 3x faster)", [r for r in mine if not r.meets_time],
                 [r.speedup for r in mine], "{:.2f}x"),
                ("memory (<= 0.5 peak)", [r for r in mine if not r.meets_memory],
                 [r.memory_ratio for r in mine], "{:.2f}")):
            span = f"{fmt.format(min(ratios))} to {fmt.format(max(ratios))}"
            verdict = f"**missed on {len(missed)} of {len(mine)} rows**" if missed else \
                f"met on all {len(mine)} rows"
            lines.append(f"- {op}, {what}: {verdict} (ratio {span}).")
    return lines


def breakdown_summary(breakdown) -> list[str]:
    """Which kernel dominates at the shape where the cpu kernels take longest."""
    shape, ms = max(breakdown, key=lambda item: sum(v for k, v in item[1].items()
                                                  if k.startswith("cpu")))
    ms = {name: seconds * 1e3 for name, seconds in ms.items()}
    agg = {k: ms[f"cpu agg {k}"] for k in ("fwd", "input-grad", "weight-grad")}
    top = max(agg, key=agg.get)
    return [
        f"At the slowest shape, {shape}: cpu aggregation kernels fwd {agg['fwd']:.1f} ms, "
        f"input-grad {agg['input-grad']:.1f} ms, weight-grad {agg['weight-grad']:.1f} ms "
        f"({top} dominates; sum {sum(agg.values()):.1f} ms against torch fwd+bwd "
        f"{ms['torch agg fwd'] + ms['torch agg bwd']:.1f} ms); cpu subtraction fwd "
        f"{ms['cpu sub fwd']:.1f} ms and bwd {ms['cpu sub bwd']:.1f} ms against torch "
        f"{ms['torch sub fwd']:.1f} ms and {ms['torch sub bwd']:.1f} ms.",
        f"There, allocating the subtraction's (N, C, K*K, H*W) output and writing it once takes "
        f"{ms['new sub output']:.1f} ms ('new sub output': fresh memory, page faults), against "
        f"{ms['cpu sub fwd'] + ms['cpu sub bwd']:.1f} ms for the cpu subtraction kernels; both "
        f"backends pay it within each fwd+bwd call of the table above."]


def gpu_section(results: list[dict], batch: int, repeats: int, bandwidth: float,
                load_at_start) -> str:
    props = torch.cuda.get_device_properties(0)
    machine = (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}; "
               f"device-to-device copy bandwidth {bandwidth / 1e9:.0f} GB/s")
    return "\n".join([GPU_HEADING, "", ops_header(batch, repeats, machine, load_at_start), "",
                      "Device ms from CUDA events, wall ms from perf_counter with synchronize. "
                      "Traffic bound: every tensor of the call moved once at the copy bandwidth.",
                      "", gpu_table(results)])


def write_results(section: str, heading: str) -> None:
    """Replace this mode's section of RESULTS.md; keep the other one (or its placeholder) and the
    other benchmarks' sections."""
    write_section(heading, section, {CPU_HEADING: f"{CPU_HEADING}\n\nNot measured yet.",
                                     GPU_HEADING: f"{GPU_HEADING}\n\n{GPU_PLACEHOLDER}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, help="batch size B (default 2 on CPU, 32 on GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per backend (median)")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="default: cuda when a GPU and Numba's CUDA target are usable")
    parser.add_argument("--threads", type=int,
                        help="threads for torch and Numba (default: theirs, one per core)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-kernel timings")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    if args.threads:
        set_threads(args.threads)

    device = args.device or ("cuda" if torch.cuda.is_available()
                             and "cuda" in ops.available_backends() else "cpu")
    batch = args.batch or (32 if device == "cuda" else 2)
    cases = [Case(op, pad, batch, c, s, k)
             for op in OPS for pad in PAD_MODES for c, s, k in STAGES]

    if device == "cpu":
        verify_cpu_peak_method()
        rows = []
        for case in cases:
            rows.append(measure_cpu(case, args.repeats))
            print(f"measured {case.op} {case.pad_mode} {case.x_shape} K={case.kernel_size}",
                  file=sys.stderr)
        breakdown = None if args.no_breakdown else cpu_breakdown(batch, args.repeats)
        section = cpu_section(rows, breakdown, batch, args.repeats, load_at_start)
        heading = CPU_HEADING
    else:
        bandwidth = copy_bandwidth()
        results = [measure_gpu(case, args.repeats, bandwidth) for case in cases]
        section = gpu_section(results, batch, args.repeats, bandwidth, load_at_start)
        heading = GPU_HEADING

    print(section)
    if args.write:
        write_results(section, heading)
        print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
