"""Benchmark of a training step: images/s and peak memory of SAN10 (and ResNet26) in each mode,
against the plain eager model on the ``"torch"`` backend in float32, measured in the same run.

What is measured
----------------
One *training step* of a model in train mode (batch norm on batch statistics, running statistics
updated): the forward of a batch of random images x (B, 3, S, S), the cross-entropy against
random labels (B,) of 1000 classes, the backward, an SGD step (momentum 0.9, step size
0.1 * B / 256, the paper's recipe scaled linearly to the batch), and the gradients released
(``zero_grad(set_to_none=True)``), so that every step allocates its own.

Models (Zhao et al., CVPR 2020, Table 1, with the paper's defaults): ``san10_pairwise``,
``san10_patchwise``, and ``resnet26`` for scale. Modes, each a model loaded with the same initial
weights (``load_state_dict`` of the baseline's):

=================  ===========================================================================
``torch``          the baseline: eager, every SAN operator on ``backend="torch"`` (plain torch,
                   the specification of :mod:`sanmini.ops`), float32
``ops``            eager, the compiled operators: backend ``"cpu"`` (Numba) on a CPU, ``"cuda"``
                   (Numba CUDA kernels) on a GPU, float32
``ops+recompute``  ``ops`` with every attention layer's weight branch recomputed in the backward
                   pass (``recompute=True``, :mod:`sanmini.nn.recompute`)
``ops+bf16``       ``ops`` under ``torch.autocast(dtype=torch.bfloat16)``
``compile``        ``torch.compile`` of the ``ops`` model (``--compile``; on by default on a GPU,
                   off on a CPU, where the inductor backend compiles a SAN for minutes)
``fused``          ``ops`` with every pairwise attention layer's weight branch and aggregation
                   as one operator that writes none of its (N, C, K*K, H*W) tensors
                   (``fused=True``, :func:`sanmini.ops.fused_pairwise`, on its CPU or CUDA
                   kernels); pairwise SANs only
=================  ===========================================================================

ResNet26 has no SAN operators, so its ``ops`` and ``ops+recompute`` would be the baseline again
and are left out; its ``bf16`` and ``compile`` rows are the plain ResNet under autocast and under
``torch.compile``.

Every mode starts from the same weights (:func:`initial_state`: the model's initial weights, with
the batch norms' shifts moved off zero so that no ReLU starts on its kink). Check before timing,
from those weights, with ``e = ||a - b|| / ||b||`` the
relative error of the logits against the baseline's; the bench stops on a miss, so it never times
a wrong model:

1. exactly, in float64: every float32 mode is built again as for timing (backend, recompute,
   torch.compile) but in float64 and makes two steps on the batch's first 2 images; at both
   (the second after one SGD update, so the gradients are checked too) e <= 1e-8 and the loss
   within 1e-8. Float32 cannot do this: batch norm on few images amplifies rounding, and one
   step apart the two backends' float32 logits differ by up to 3e-2 (SAN10 patchwise, batch 2,
   128 x 128) although their float64 gradients agree to 1e-13;
2. the timed models' first step: e <= 1e-3 and the loss within 1e-3 in float32; in bfloat16
   e <= 0.5 and the loss within 5e-2 (a wrong model is near 1.4; a SAN's bfloat16 logits are
   0.11 (pairwise) and 0.25 (patchwise) from float32 at initialisation, on either backend).

That first step and one more are the warm-up (Numba compiles its kernels, cuDNN picks its
algorithms, torch.compile compiles).

CPU (the default without a GPU; batch 4 at 128 x 128 by default, the smallest image side at which
SAN10's last stage, S / 32, is larger than the reflection padding 3 of its 7 x 7 footprints):

* time: ``time.perf_counter`` around a step, the median of ``--repeats`` (5) steps, the modes taking
  turns step by step (see :func:`common.median_seconds`); images/s = B / median;
* memory: ``step`` = the most bytes held at once by torch allocations made during one more step
  (activations, gradients, temporaries), read from the PyTorch profiler's allocation records as in
  bench/ops.py (:func:`sanmini.memory.peak_bytes`, checked first on known allocations); ``peak`` =
  step + the bytes resident across steps (weights, momentum buffers, the batch), so that it
  compares with a GPU's ``max_memory_allocated``.

GPU (``torch.cuda.is_available()``; batch 64 at 224 x 224 by default, the issue's setting):

* time: CUDA events recorded before and after a step on the current stream, with
  ``torch.cuda.synchronize()`` around them, the median of ``--repeats`` (20) steps, the modes taking
  turns; images/s = B / median;
* memory: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()`` over one step,
  minus what was allocated before it (the other modes' models live on the GPU too), plus this
  mode's resident bytes: the peak of a process that held only this mode's model.

The bench fails rather than report a wrong figure: a GPU without Numba's CUDA target (or under its
simulator) stops it with the reason, an operator that did not resolve to the mode's backend, a
non-finite loss or a check out of tolerance stop it, and a ``--compile`` that fails raises.

Usage::

    python bench/train_step.py                      # print the table
    python bench/train_step.py --threads 1 --write  # ... and update bench/RESULTS.md (this section)
    python bench/train_step.py --batch 2 --size 128 --repeats 3 --models san10_pairwise
    python bench/train_step.py --compile --compile-backend aot_eager   # trace only, quick on a CPU
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):   # sanmini from this checkout (installed or not), bench/common.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from common import (MIB, RESULTS, ROOT, cpu_model, header, median_seconds,  # noqa: E402
                    set_threads, threads_flag, verify_cpu_peak_method, write_section)
from sanmini.memory import peak_bytes  # noqa: E402
from sanmini.models import create  # noqa: E402
from sanmini.nn.operators import _Footprint  # noqa: E402
from sanmini.cpu_settings import has_bfloat16 as cpu_has_bfloat16  # noqa: E402
from sanmini.ops import functional  # noqa: E402
from sanmini import reference  # noqa: E402

MODELS = ("san10_pairwise", "san10_patchwise", "resnet26")
NUM_CLASSES = 1000
LR_PER_256, MOMENTUM = 0.1, 0.9
CHECK_BATCH = 2
# compute dtype -> (relative tolerance of the logits, relative tolerance of the loss)
TOLERANCE = {torch.float64: (1e-8, 1e-8), torch.float32: (1e-3, 1e-3), torch.bfloat16: (0.5, 5e-2)}
HEADINGS = {"cpu": "## Training step: CPU, SAN10 and ResNet26, each mode vs eager torch",
            "cuda": "## Training step: GPU, SAN10 and ResNet26, each mode vs eager torch"}
GPU_PLACEHOLDER = ("Not measured: no GPU was available in the session that wrote this (on a GPU, "
                   "`python bench/train_step.py --write` measures batch 64 at 224 x 224 with CUDA "
                   "events and `torch.cuda.max_memory_allocated`, the `fused` mode on the CUDA "
                   "kernels of `sanmini/ops/fused_cuda.py` among the others).")

# The anchor: the reference implementation of Zhao et al. (and an unfold version under
# torch.compile), one training step measured on one H200; the figures live in sanmini.reference.
ANCHORS = [("reference SAN10 pairwise", reference.IMAGES_PER_S["san10_pairwise"],
            reference.PEAK_GB["san10_pairwise"]),
           ("reference SAN10 patchwise", reference.IMAGES_PER_S["san10_patchwise"],
            reference.PEAK_GB["san10_patchwise"]),
           ("unfold + torch.compile SAN10 pairwise", reference.UNFOLD_COMPILE["images_per_s"],
            reference.UNFOLD_COMPILE["peak_gb"]),
           ("ResNet26", reference.IMAGES_PER_S["resnet26"], reference.PEAK_GB["resnet26"])]
# images/s, GB at most: twice the reference's rate in no more than its memory; 1.5 times, rounded.
GOALS = {"san10_pairwise": (2 * reference.IMAGES_PER_S["san10_pairwise"],
                            reference.PEAK_GB["san10_pairwise"]),
         "san10_patchwise": (1130, None)}


@dataclass(frozen=True)
class Mode:
    name: str
    ops: bool = False          # the compiled operators (else backend="torch")
    recompute: bool = False
    bf16: bool = False         # torch.autocast to bfloat16
    compile: bool = False      # torch.compile of the model
    fused: bool = False        # the fused pairwise weight branch (fused=True; pairwise only)


SAN_MODES = (Mode("torch"), Mode("ops", ops=True), Mode("ops+recompute", ops=True, recompute=True),
             Mode("ops+bf16", ops=True, bf16=True), Mode("compile", ops=True, compile=True),
             Mode("fused", ops=True, fused=True))
RESNET_MODES = (Mode("torch"), Mode("bf16", bf16=True), Mode("compile", compile=True))


def modes_of(name: str, with_compile: bool) -> tuple[Mode, ...]:
    """The modes measured for a model: ``fused`` for pairwise SANs only (patchwise has no fused
    branch)."""
    modes = SAN_MODES if name.startswith("san") else RESNET_MODES
    return tuple(m for m in modes if (with_compile or not m.compile)
                 and (not m.fused or name.endswith("_pairwise")))


class Trainer:
    """One mode's model, optimizer and step on a fixed batch."""

    def __init__(self, name: str, mode: Mode, state: dict, device: torch.device, ops_backend: str,
                 x: torch.Tensor, target: torch.Tensor, compile_backend: str,
                 dtype: torch.dtype = torch.float32):
        self.mode, self.device, self.x, self.target = mode, device, x.to(device, dtype), target.to(device)
        kwargs = {}
        if name.startswith("san"):
            kwargs = dict(backend=ops_backend if mode.ops else "torch", recompute=mode.recompute)
            if mode.fused:
                kwargs["fused"] = True
        self.model = create(name, num_classes=NUM_CLASSES, **kwargs)
        self.model.load_state_dict(state)
        self.model.to(device, dtype).train()
        self.expected_backend = kwargs.get("backend")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR_PER_256 * x.shape[0] / 256,
                                         momentum=MOMENTUM)
        self.forward = torch.compile(self.model, backend=compile_backend) if mode.compile else self.model
        self.compute_dtype = torch.bfloat16 if mode.bf16 else dtype

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, cross-entropy, backward, SGD step, gradients released; (loss, logits), detached."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mode.bf16):
            logits = self.forward(self.x)
            loss = F.cross_entropy(logits, self.target)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), logits.detach()

    def resident_bytes(self) -> int:
        """Bytes held across steps: weights, buffers, momentum, the batch (distinct storages)."""
        tensors = [*self.model.parameters(), *self.model.buffers(), self.x, self.target]
        tensors += [v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())

    def check_backend(self) -> None:
        """Every SAN operator of an ops mode runs on the compiled backend, of torch mode on torch."""
        if self.expected_backend is None:
            return
        found = {m.backend for m in self.model.modules() if isinstance(m, _Footprint)}
        if found != {self.expected_backend}:
            sys.exit(f"{self.mode.name}: operators on backends {sorted(found)}, expected "
                     f"{self.expected_backend!r}")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def compare_steps(what: str, trainers: dict[str, Trainer], steps: int) -> dict[str, float]:
    """``steps`` steps of every trainer; logits and losses within :data:`TOLERANCE` of those of
    ``trainers["torch"]``, else exit. Each trainer's largest relative logits error."""
    results = {}
    for mode_name, trainer in trainers.items():
        trainer.check_backend()
        results[mode_name] = [trainer.step() for _ in range(steps)]
        for loss, _ in results[mode_name]:
            if not math.isfinite(loss.item()):
                sys.exit(f"{what} {mode_name}: the loss is {loss.item()}")
    errors = {}
    for mode_name, trainer in trainers.items():
        logits_tol, loss_tol = TOLERANCE[trainer.compute_dtype]
        errors[mode_name] = 0.0
        for k, ((loss, logits), (base_loss, base_logits)) in enumerate(
                zip(results[mode_name], results["torch"]), start=1):
            err = relative_error(logits, base_logits)
            loss_err = abs(loss.item() - base_loss.item()) / abs(base_loss.item())
            if not (err <= logits_tol and loss_err <= loss_tol):
                sys.exit(f"{what} {mode_name}, step {k}: logits relative error {err:.2e} "
                         f"(tolerance {logits_tol:g}), loss {loss.item():.8f} against the "
                         f"baseline's {base_loss.item():.8f} (relative {loss_err:.2e}, tolerance "
                         f"{loss_tol:g}). Not timing a wrong model.")
            errors[mode_name] = max(errors[mode_name], err)
    return errors


def check_in_float64(name: str, modes, state: dict, device: torch.device, ops_backend: str,
                     x: torch.Tensor, target: torch.Tensor, compile_backend: str) -> dict[str, float]:
    """Every float32 mode, built as for timing but in float64, on the batch's first
    :data:`CHECK_BATCH` images: two steps, logits and losses as the baseline's within 1e-8."""
    trainers = {m.name: Trainer(name, m, state, device, ops_backend, x[:CHECK_BATCH],
                                target[:CHECK_BATCH], compile_backend, dtype=torch.float64)
                for m in modes if not m.bf16}
    errors = compare_steps(f"{name} (float64 check)", trainers, steps=2)
    del trainers
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return errors


def cuda_step_seconds(trainer: Trainer) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    trainer.step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


@dataclass
class Row:
    model: str
    mode: str
    seconds: float
    step_bytes: int
    resident_bytes: int
    exact_error: float | None      # float64 check, two steps (None: a bfloat16 mode)
    error: float                   # the timed model's first step
    batch: int

    @property
    def peak_bytes(self) -> int:
        return self.step_bytes + self.resident_bytes

    @property
    def images_per_s(self) -> float:
        return self.batch / self.seconds


def initial_state(name: str) -> dict:
    """The initial weights of every mode: the model's own, but with each batch norm's shift drawn
    at random (0.1 N(0, 1)) instead of zero, so that no input of a ReLU sits exactly on its kink.

    With the shifts at zero, one does: in a pairwise layer the centre tap of the position encoding
    is p_i - p_i = 0 at every pixel, and about the mean of its channel, so gamma's first batch norm
    maps it to a value within rounding of 0, and which side of 0 it falls on, so whether the ReLU
    passes its gradient, depends on the order of a sum. The gradients of that batch norm's shift
    then differ by tens of percent between two correct implementations (torch.compile with
    inductor against eager: 2e-3 against 3e-2 for one entry, in float64), and the float64 check
    fails one step later.
    """
    torch.manual_seed(0)
    model = create(name, num_classes=NUM_CLASSES)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.state_dict()


def measure(name: str, args, device: torch.device, ops_backend: str) -> list[Row]:
    state = initial_state(name)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (args.batch,), generator=generator)
    modes = modes_of(name, args.compile)
    exact = check_in_float64(name, modes, state, device, ops_backend, x, target, args.compile_backend)
    trainers = {m.name: Trainer(name, m, state, device, ops_backend, x, target, args.compile_backend)
                for m in modes}
    errors = compare_steps(name, trainers, steps=1)     # also the warm-up step
    for trainer in trainers.values():
        trainer.step()                                  # a second warm-up step
    print(f"checked {name}: float64 " + ", ".join(f"{m} {e:.1e}" for m, e in exact.items())
          + "; timed models, first step " + ", ".join(f"{m} {e:.1e}" for m, e in errors.items()),
          file=sys.stderr)
    if device.type == "cuda":
        times = {m: [] for m in trainers}
        for _ in range(args.repeats):
            for mode_name, trainer in trainers.items():   # taking turns, as on the CPU
                times[mode_name].append(cuda_step_seconds(trainer))
        seconds = {m: statistics.median(t) for m, t in times.items()}
        step_bytes = {m: peak_bytes(t.step, device) for m, t in trainers.items()}
    else:
        seconds = median_seconds({m: t.step for m, t in trainers.items()}, args.repeats)
        step_bytes = {m: peak_bytes(t.step) for m, t in trainers.items()}
    rows = [Row(name, m, seconds[m], step_bytes[m], t.resident_bytes(), exact.get(m), errors[m],
                args.batch) for m, t in trainers.items()]
    print(f"measured {name}", file=sys.stderr)
    return rows


# --- report ------------------------------------------------------------------------------------

def table(rows: list[Row]) -> str:
    lines = ["| model | mode | ms/step | images/s | speed vs torch | step MiB | peak MiB "
             "| peak vs torch | check float64 | check first step |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = next(b for b in rows if b.model == r.model and b.mode == "torch")
        lines.append(f"| {r.model} | {r.mode} | {r.seconds * 1e3:.0f} | {r.images_per_s:.2f} "
                     f"| {r.images_per_s / base.images_per_s:.2f}x | {r.step_bytes / MIB:.0f} "
                     f"| {r.peak_bytes / MIB:.0f} | {r.peak_bytes / base.peak_bytes:.2f}x "
                     f"| {'-' if r.exact_error is None else f'{r.exact_error:.0e}'} | {r.error:.0e} |")
    return "\n".join(lines)


def anchor_lines() -> list[str]:
    """The anchor's tables, from :mod:`sanmini.reference` (tests/test_reference.py reads them back)."""
    setting = reference.SETTING
    lines = [f"The anchor (`sanmini.reference`), measured on {setting['gpu']} on {setting['date']} "
             f"(the reference implementation: {setting['implementation']}; torch "
             f"{setting['torch']}), one training step at batch {setting['batch']}, "
             f"{setting['image_size']} x {setting['image_size']}, {setting['dtype']}, for comparison "
             "with a GPU run of this bench:", "",
             "| implementation | images/s | peak GB |", "|---|---:|---:|"]
    lines += [f"| {what} | {rate} | {gb} |" for what, rate, gb in ANCHORS]
    lines += ["", "Where the time of one step of the reference SAN10 pairwise goes (profiled; the "
              "rest of the step was not broken down):", "",
              "| part of the step | ms | share of the step |", "|---|---:|---:|",
              f"| whole step | {reference.STEP_MS} | 100% |"]
    for part, ms in reference.PROFILE_MS.items():
        escaped = part.replace("*", r"\*")                  # K*K, not emphasis, in Markdown
        lines.append(f"| {escaped} | {ms} | {ms / reference.STEP_MS:.0%} |")
    (pairwise_rate, pairwise_gb), (patchwise_rate, _) = GOALS["san10_pairwise"], GOALS["san10_patchwise"]
    lines += ["", f"Goals of the issue: SAN10 pairwise >= {pairwise_rate} images/s (twice the "
              f"reference) at <= {pairwise_gb} GB; SAN10 patchwise >= {patchwise_rate} images/s; "
              "bfloat16 faster than float32 with less memory. (GB as the measurement gave them; "
              "this bench's GB are 10^9 bytes.)"]
    return lines


def gpu_goal_lines(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        goal = GOALS.get(r.model)
        if goal is None or r.mode == "torch":
            continue
        rate, gb = goal
        verdict = [f"{r.images_per_s:.0f} images/s {'>=' if r.images_per_s >= rate else '**<**'} {rate}"]
        if gb is not None:
            verdict.append(f"{r.peak_bytes / 1e9:.1f} GB {'<=' if r.peak_bytes / 1e9 <= gb else '**>**'} {gb}")
        lines.append(f"- {r.model} {r.mode}: " + ", ".join(verdict))
    for model in GOALS:
        fp32, bf16 = (next((r for r in rows if r.model == model and r.mode == m), None)
                      for m in ("ops", "ops+bf16"))
        if fp32 and bf16:
            faster, smaller = bf16.seconds < fp32.seconds, bf16.peak_bytes < fp32.peak_bytes
            lines.append(f"- {model} ops+bf16 against ops: {'faster' if faster else '**not faster**'}"
                         f" ({fp32.seconds / bf16.seconds:.2f}x), "
                         f"{'less memory' if smaller else '**not less memory**'} "
                         f"({bf16.peak_bytes / fp32.peak_bytes:.2f}x)")
    return lines


def section(rows: list[Row], args, device: torch.device, ops_backend: str, load_at_start) -> str:
    import numba
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        how = ("CUDA events around each step (synchronized), median; peak = "
               "`max_memory_allocated` over a step beyond what was allocated before it, plus the "
               "mode's resident bytes (weights, momentum, batch)")
    else:
        machine = (f"{cpu_model()}, {torch.get_num_threads()} torch threads, "
                   f"{numba.get_num_threads()} Numba threads, {os.cpu_count()} cores")
        how = ("perf_counter around each step, median; step = most bytes held at once by torch "
               "allocations made during a step (profiler records), peak = step + the mode's "
               "resident bytes (weights, momentum, batch)")
    models = " ".join(args.models)
    command = (f"`python bench/train_step.py --batch {args.batch} --size {args.size} --repeats "
               f"{args.repeats}{threads_flag()} --models {models}"
               f"{' --compile --compile-backend ' + args.compile_backend if args.compile else ' --no-compile'}"
               " --write`")
    lines = [
        f"- Shapes: x ({args.batch}, 3, {args.size}, {args.size}), {NUM_CLASSES} classes; SGD step "
        f"size {LR_PER_256 * args.batch / 256:g}, momentum {MOMENTUM}; train mode; ops backend "
        f"{ops_backend!r}",
        f"- Median of {args.repeats} steps after the float64 check and two warm-up steps (the first "
        f"checked), the modes taking turns; "
        f"{how}; command: {command}",
    ]
    parts = [HEADINGS[device.type], "", header(machine, lines, load_at_start), "",
             "One step = forward, cross-entropy on random labels, backward, SGD, gradients "
             "released. Modes (bench/train_step.py): torch = the baseline, eager, backend "
             "\"torch\", float32; ops = the compiled operators; ops+recompute = ops with "
             "recompute=True; ops+bf16 = ops under torch.autocast(bfloat16); compile = "
             "torch.compile of ops; fused = ops with fused=True (pairwise). Every mode starts from the same weights: the model's initial "
             "ones with the batch norms' shifts moved off zero (see initial_state). Check columns: "
             "the largest relative error of the logits against the baseline's: over two steps of "
             "float64 copies on 2 images (the bench stops above 1e-8), and at the first step of "
             "the timed model (stops above 1e-3 in float32, 0.5 in bfloat16).", "",
             table(rows), ""]
    if device.type == "cuda":
        parts += ["Against the issue's goals:", "", *gpu_goal_lines(rows), ""]
    else:
        parts += ["**GPU figures were not measured: no GPU was available.** These CPU figures, at "
                  "a small batch and image size, are not comparable with the H200 anchor below; "
                  "the ratios to the baseline are what they show.", ""]
        if not cpu_has_bfloat16():
            parts += ["This CPU has no bfloat16 instructions (AVX-512 BF16 or AMX): under autocast "
                      "torch converts bfloat16 in software, so the bf16 rows measure that "
                      "conversion and are slower than float32. They say nothing of a GPU, or of a "
                      "CPU with those instructions.", ""]
    parts += anchor_lines()
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, help="images per step B (default 4 on CPU, 64 on GPU)")
    parser.add_argument("--size", type=int, help="image side S (default 128 on CPU, 224 on GPU)")
    parser.add_argument("--repeats", type=int, help="timed steps per mode, median (default 5 on CPU, "
                        "20 on GPU)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when a GPU is present")
    parser.add_argument("--threads", type=int,
                        help="threads for torch and Numba (default: theirs, one per core)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="add the compile mode (default: on on a GPU, off on a CPU)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compile mode (aot_eager: trace only)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md (this section)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    if args.threads:
        set_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch finds no CUDA GPU")
        usable, simulated, reason = functional.CUDA_TARGET
        if not usable or simulated:
            sys.exit(f"a GPU is present but the \"cuda\" ops backend is not usable: "
                     f"{reason or 'Numba runs its CUDA simulator (unset NUMBA_ENABLE_CUDASIM)'}")
        torch.backends.cudnn.benchmark = True
        ops_backend = "cuda"
    else:
        if "cpu" not in functional.available_backends():
            sys.exit("the \"cpu\" ops backend needs Numba (pip install numba)")
        verify_cpu_peak_method()
        ops_backend = "cpu"
    args.batch = args.batch or (64 if device.type == "cuda" else 4)
    args.size = args.size or (224 if device.type == "cuda" else 128)
    args.repeats = args.repeats or (20 if device.type == "cuda" else 5)
    args.compile = device.type == "cuda" if args.compile is None else args.compile
    if any(m.startswith("san") for m in args.models) and args.size // 32 <= 3:
        sys.exit(f"--size {args.size}: SAN10's last stage would be {args.size // 32} pixels wide, "
                 "not more than the reflection padding 3 of its 7 x 7 footprints; use 128 or more")

    rows = [row for name in args.models for row in measure(name, args, device, ops_backend)]
    text = section(rows, args, device, ops_backend, load_at_start)
    print(text)
    if args.write:
        write_section(HEADINGS[device.type], text,
                      {HEADINGS["cpu"]: f"{HEADINGS['cpu']}\n\nNot measured yet.",
                       HEADINGS["cuda"]: f"{HEADINGS['cuda']}\n\n{GPU_PLACEHOLDER}"})
        print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
