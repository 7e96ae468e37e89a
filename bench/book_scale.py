"""Benchmark of a training step at the book's scale: SAN10 against the ResNet26 it is matched with,
per multiply-add, on a CPU.

Every network the book trains runs on a CPU (chapters 3, 4, 5, 5b, 7 and the experiments' sweep),
at batch 32 and 64 x 64 pixels. This bench times one training step of each network of those
configurations and divides by its multiply-adds, so that a SAN's cost can be read against the
ResNet26's: ``per multiply-add vs ResNet`` = (SAN ms / SAN multiply-adds) / (ResNet ms / ResNet
multiply-adds). A SAN that did its arithmetic as efficiently as a ResNet would read 1.00.

Configurations (:data:`CONFIGS`):

- ``sweep``: the experiments' fair sweep (:data:`sanmini.experiments.plan.FAIR_DEFAULTS`): SAN10
  pairwise and patchwise at stem 32, weights shared over 4 channels, footprints (3, 7, 7, 7, 3);
  ResNet26 of stem 28, matched in parameters; 12 classes;
- ``chapter7``: chapter 7's networks: SAN10 pairwise at stem 16, weights shared over 4, 3 x 3
  footprints; ResNet26 of stem 8; 10 classes.

Modes of a SAN: ``ops`` (eager, Numba's CPU kernels, ``backend="cpu"``), ``ops-conv`` (``ops`` with
gamma's 1 x 1 maps as ``nn.Conv2d``, as they were computed before :class:`sanmini.nn.Pointwise`: the
baseline of that change, in the same run), ``ops-before`` (``ops`` as it was before the SAN's
max-pool ran on :func:`sanmini.ops.max_pool2x2` and phi, psi, beta on one convolution,
:func:`sanmini.nn.maps.one_pass`: torch's ``nn.MaxPool2d`` and three ``nn.Conv2d`` calls; the
baseline of those changes, in the same run), ``fused`` (``ops`` with
each pairwise layer's weight branch and aggregation as one operator, ``fused=True``; pairwise only)
and ``compile`` (``torch.compile`` of the ``ops`` model, ``--compile``). The ResNet26 runs eager
(and compiled with ``--compile``, its own row). Every mode starts from the same weights, and the
first step's losses of a network's modes must agree within 1e-4 (relative) before anything is timed.

One step: forward of a random batch (B, 3, 64, 64), cross-entropy against random labels, backward,
SGD with momentum, gradients released. Time: the fastest of ``--repeats`` steps, the networks and
modes of a configuration taking turns step by step (:func:`sanmini.timing.take_turns`), after two
warm-up steps (Numba compiles its kernels, torch.compile compiles); on 1 and on 2 threads (torch's
and Numba's). Peak: the most bytes held at once by torch allocations during one step, on one
thread (:func:`sanmini.memory.peak_bytes`).

``--profile`` adds, for each SAN of the configuration in ``ops`` mode on one thread, where one
step's time goes: torch's profiler's self CPU time of each operator, summed into the groups of
:data:`GROUPS` (the shares of one profiled step on this machine, not a rule).

``--traffic`` adds, for each network of the configuration (SANs in ``ops`` mode), the bytes that
one step's operators read and write (:mod:`sanmini.traffic`, an estimate that does not depend on
the machine), per multiply-add, and the time that traffic would take at this machine's copy rate
on one thread (``copy_`` of 256 MB, :func:`copy_rate`), against the step's fastest time.

The fused path's multiply-adds (:func:`fused_madds`): counted from each pairwise layer's shapes,
not measured, how many multiply-adds gamma's 1 x 1 maps do in one step of the ``ops`` and
``fused`` paths, and the whole step's; and at what time per multiply-add, against the ResNet26's,
the fused step would meet the pairwise target.

What the target leaves the fused path's kernels (:func:`kernel_budget`, the ``sweep``'s SAN10
pairwise on each thread count): the fused step and the ResNet26's take turns; the fastest fused
step is split, by timers wrapped around the functions, into the fused operator's kernels
(:mod:`sanmini.ops.fused_cpu`), the rest of the operator (its Python side) and the rest of the step
(the network's other layers, the loss, the optimizer); the step the target allows less the two
rests is the time left to the kernels, and their counted multiply-adds in that time the rate they
would need, set beside the rate they did, the ResNet26's convolutions' (torch's profiler) and a
1024 x 1024 matrix product's on the same threads.

``python bench/book_scale.py --write`` replaces this bench's section of ``bench/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

import sanmini  # noqa: E402
from sanmini.experiments.plan import FAIR_DEFAULTS  # noqa: E402
from sanmini.memory import peak_bytes  # noqa: E402
from sanmini.timing import take_turns  # noqa: E402
from sanmini.traffic import TrafficCounter  # noqa: E402

HEADING = "## Training step at the book's scale: CPU, SAN10 per multiply-add against ResNet26"


CONFIGS = {
    "sweep": {"classes": 12, "networks": {
        "SAN10 pairwise": ("san10_pairwise", FAIR_DEFAULTS["san10_pairwise"]),
        "SAN10 patchwise": ("san10_patchwise", FAIR_DEFAULTS["san10_patchwise"]),
        "ResNet26": ("resnet26", FAIR_DEFAULTS["resnet26"])}},
    "chapter7": {"classes": 10, "networks": {
        "SAN10 pairwise": ("san10_pairwise", {"width": 16, "share_planes": 4, "kernel_size": 3}),
        "ResNet26": ("resnet26", {"width": 8})}},
}
"""Each configuration's networks: label -> (``sanmini.create`` name, overrides)."""

TARGETS = {"SAN10 pairwise": 1.5, "SAN10 patchwise": 1.2}
"""The project's targets for a SAN10 step at the book's scale with the paper's footprints (the
``sweep`` configuration): at most this many times the ResNet26's time per multiply-add, on one
thread and on two."""

GROUPS = {
    "SAN kernels (aggregation, subtraction, fused)": ("sanmini::",),
    "convolutions (1x1 and stem)": ("aten::convolution", "aten::_convolution", "aten::mkldnn_convolution",
                                    "aten::convolution_backward", "aten::thnn_conv2d", "aten::_slow_conv2d",
                                    "aten::addmm", "aten::mm", "aten::bmm"),
    "batch norm": ("aten::native_batch_norm", "aten::_batch_norm", "aten::batch_norm",
                   "aten::native_batch_norm_backward", "aten::_native_batch_norm_legit"),
    "softmax": ("aten::_softmax", "aten::softmax", "aten::_softmax_backward_data"),
    "elementwise (ReLU, add, copy, fill)": ("aten::relu", "aten::threshold", "aten::add", "aten::mul", "aten::copy_",
                                            "aten::fill_", "aten::zero_", "aten::clone", "aten::cat", "aten::sub",
                                            "aten::neg", "aten::pad", "aten::reflection_pad2d", "aten::contiguous",
                                            "aten::reflection_pad2d_backward", "aten::sum", "aten::div"),
    "optimizer": ("aten::_foreach", "Optimizer.step"),
}
"""Profiler operator names (prefixes) of each group; the rest is "other"."""


def group_of(operator: str) -> str:
    """The group of :data:`GROUPS` an operator's name (``"aten::bmm"``) falls in, or "other"."""
    return next((g for g, prefixes in GROUPS.items() if operator.startswith(prefixes)), "other")


def copy_rate(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second that torch's ``copy_`` of ``megabytes`` reads and writes (2 x the tensor),
    fastest of ``repeats``, on the threads set (:func:`common.set_threads`)."""
    src = torch.ones(megabytes * 2 ** 18)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best


def warm_steps(config: str, args, sans_only: bool):
    """Yield (label, mode, step) for each network of ``config`` (a SAN in ``ops`` mode, the ResNet
    eager; with ``sans_only`` the SANs only), on one thread, built from seed 0 for one random
    batch, after two warm-up steps (Numba loads its kernels)."""
    spec = CONFIGS[config]
    common.set_threads(1)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, spec["classes"], (args.batch,))
    for label, (name, overrides) in spec["networks"].items():
        if sans_only and not name.startswith("san"):
            continue
        mode = "ops" if name.startswith("san") else "eager"
        torch.manual_seed(0)
        step = trainer(build(name, overrides, spec["classes"], mode), x, y, False)
        step(), step()
        yield label, mode, step


def traffic(config: str, args, rows: list, rate: float) -> list[str]:
    """The estimated memory traffic of one step of each network of ``config`` (:mod:`sanmini.traffic`;
    SANs in ``ops`` mode), in bytes per multiply-add, and the time it would take at this machine's
    copy rate on one thread, against the step's measured time (``rows``)."""
    resnet = next(r for r in rows if r.config == config and r.network == "ResNet26" and r.mode == "eager")
    lines = []
    for label, mode, step in warm_steps(config, args, sans_only=False):
        counter = TrafficCounter()
        with counter:
            step()
        total = sum(counter.bytes.values())
        row = next(r for r in rows if r.config == config and r.network == label and r.mode == mode)
        groups = dict.fromkeys(list(GROUPS) + ["other"], 0)
        for key, b in counter.bytes.items():
            groups[group_of(key)] += b
        parts = ", ".join(f"{g} {100 * b / total:.0f}%" for g, b in groups.items())
        at_rate = 1000 * total / rate
        share = (f", {100 * at_rate / row.ms[1]:.0f}% of the step's {row.ms[1]:.0f} ms on one thread"
                 if 1 in row.ms else "")
        if config == "sweep" and label in TARGETS and 1 in row.ms:
            allowed = TARGETS[label] * resnet.ms[1] / resnet.madds * row.madds
            share += (f"; the target of {TARGETS[label]} times the ResNet26's time per multiply-add allows a "
                      f"step {allowed:.0f} ms, of which the traffic at the copy rate is {100 * at_rate / allowed:.0f}%")
        lines.append(f"- {config}, {label} ({mode}): {total / 1e9:.2f} GB read and written by the operators of "
                     f"one step, {total / (args.batch * row.madds):.1f} bytes per multiply-add; at the copy rate "
                     f"{at_rate:.0f} ms{share}; by group: {parts}.")
    return lines


PASSES_OF = {"W1": (3, 9), "W2": (3, 6), "aggregation": (3, 4)}
"""How many times one training step of the ``ops`` path and of the ``fused`` path does the
multiply-adds of each part of a pairwise layer that the fused path computes again, one forward's
worth each: gamma's two 1 x 1 maps (W1: C0 x Rh per column, W2: Rh x Cw; a column is one tap of
one output pixel) and the aggregation (V per column). ``ops``: the forward, and the backward's two
gradients. ``fused`` (:mod:`sanmini.ops.fused_cpu`): W1 in forward pass 2; W1, W2 and the
aggregation in pass 3; in backward pass 1 all three again, W2's input and weight gradients, the
fold's W1^T and two products of C0 by Rh, the aggregation's two gradients; in backward pass 3 all
three again, W2's input gradient, W1's weight and input gradients, the aggregation's gradient of
alpha."""


def counted_parts(config: str, args, name: str, overrides: dict) -> dict[str, int]:
    """Multiply-adds of gamma's 1 x 1 maps and the aggregation in one training step of the ``ops``
    and the ``fused`` path of network ``name`` (:data:`PASSES_OF`), counted from its pairwise
    layers' shapes on a batch (``args.batch``, 3, ``args.size``, ``args.size``): {"ops": n, "fused": n}."""
    from sanmini.nn import PairwiseAttention
    model = build(name, overrides, CONFIGS[config]["classes"], "ops")
    forward = dict.fromkeys(PASSES_OF, 0)               # one forward's multiply-adds of each part

    def hook(module, inputs, output):
        columns = output.shape[0] * module.aggregation.kernel_size ** 2 * output.shape[2] * output.shape[3]
        for part, conv in (("W1", module.conv_w[2]), ("W2", module.conv_w[5])):
            forward[part] += columns * conv.in_channels * conv.out_channels
        forward["aggregation"] += columns * output.shape[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PairwiseAttention)]
    with torch.no_grad():
        model(torch.zeros(args.batch, 3, args.size, args.size))
    for h in handles:
        h.remove()
    return {path: sum(PASSES_OF[part][k] * forward[part] for part in PASSES_OF)
            for k, path in enumerate(("ops", "fused"))}


def fused_madds(config: str, args, rows: list) -> list[str]:
    """What the fused path's recomputation costs in multiply-adds, counted from the layers' shapes
    (nothing timed): gamma's 1 x 1 maps and the aggregation in one step of the ``ops`` and
    ``fused`` paths (:func:`counted_parts`), and the whole step's, taken as three times the
    forward's counted multiply-adds (forward, input and weight gradients) with those parts replaced
    by their count."""
    spec = CONFIGS[config]
    lines = []
    for label, (name, overrides) in spec["networks"].items():
        if name != "san10_pairwise":
            continue
        parts = counted_parts(config, args, name, overrides)
        row = next(r for r in rows if r.config == config and r.network == label and r.mode == "ops")
        step = {path: 3 * args.batch * row.madds - parts["ops"] + n for path, n in parts.items()}
        ratio = step["fused"] / step["ops"]
        line = (f"- {config}, {label}: gamma's 1 x 1 maps and the aggregation do {parts['ops'] / 1e9:.2f} G "
                f"multiply-adds in one step of the ops path and {parts['fused'] / 1e9:.2f} G in the fused path "
                f"({parts['fused'] / parts['ops']:.2f} times); the whole step, counted as three times the "
                f"forward's {args.batch * row.madds / 1e9:.2f} G, {step['ops'] / 1e9:.2f} G and "
                f"{step['fused'] / 1e9:.2f} G ({ratio:.2f} times)")
        fused = next((r for r in rows if r.config == config and r.network == label and r.mode == "fused"), None)
        resnet = next((r for r in rows if r.config == config and r.network == "ResNet26" and r.mode == "eager"),
                      None)
        if config == "sweep" and label in TARGETS:
            line += (f"; to meet the target of {TARGETS[label]} times the ResNet26's time per counted "
                     f"multiply-add, the fused step would have to do its own multiply-adds at "
                     f"{TARGETS[label] / ratio:.2f} times the ResNet26's time per multiply-add")
            if fused and resnet and 1 in fused.ms and 1 in resnet.ms:
                got = (fused.ms[1] / fused.madds) / (resnet.ms[1] / resnet.madds) / ratio
                line += f"; the recorded fused step did them at {got:.2f} times, on one thread"
        lines.append(line + ".")
    return lines


def matmul_rate(n: int = 1024, repeats: int = 10) -> float:
    """Multiply-adds per second of torch's (n, n) @ (n, n) float32 product, fastest of ``repeats``,
    on the threads set: a large, dense product, the most a library does per multiply-add here."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return n ** 3 / best


def convolution_rate(step, madds: float) -> float:
    """Multiply-adds per second of the convolutions in one training ``step`` of a ResNet26 (warmed
    up) on the threads set: three times its forward's ``madds`` (the output, the input and the
    weight gradients; the stem's input gradient, counted, is not computed, so this is a little high)
    over the self time of its convolution operators (:data:`GROUPS`) in torch's profiler, the
    fastest of three steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    best = float("inf")
    for _ in range(3):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        best = min(best, sum(e.self_cpu_time_total for e in prof.key_averages()
                             if group_of(e.key) == "convolutions (1x1 and stem)") / 1e6)
    return 3 * madds / best


class Timed:
    """While entered, ``owner.name`` (a module's function) is wrapped so that the seconds of its
    calls add up in ``seconds``."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.seconds = owner, name, 0.0
        self.original = getattr(owner, name)

    def __enter__(self):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        setattr(self.owner, self.name, call)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.name, self.original)


def split_step(step) -> tuple[float, float, float]:
    """One fused step, timed: (whole, inside the fused operator, inside its kernels), seconds.
    The operator: :func:`sanmini.ops.fused_pairwise` as the pairwise layer calls it, and its
    backward (``sanmini.ops.fused._backward``); its kernels: every pass of
    :mod:`sanmini.ops.fused_cpu` (bench/fused_passes.py's ``PassTimer``)."""
    import sanmini.nn.pairwise as pairwise
    from fused_passes import PassTimer
    from sanmini.ops import fused
    with contextlib.ExitStack() as stack:
        operator = [stack.enter_context(Timed(pairwise, "fused_pairwise")),
                    stack.enter_context(Timed(fused, "_backward"))]
        kernels = stack.enter_context(PassTimer())
        start = time.perf_counter()
        step()
        whole = time.perf_counter() - start
    return whole, sum(t.seconds for t in operator), sum(kernels.seconds.values())


def kernel_budget(config: str, args, rows: list) -> list[str]:
    """What the pairwise target leaves the fused operator's kernels (``sweep`` only), on each thread
    count. The fused SAN10 step and the ResNet26's take turns ``args.repeats`` times; the fastest
    fused step is split (:func:`split_step`) into its kernels, the rest of the operator (its
    Python side) and the rest of the step (the network's other layers, the loss, the optimizer).
    The step the target allows (from the fastest ResNet26 step of the same turns) less the two
    rests is what the kernels may take; their counted multiply-adds (:func:`counted_parts`) in that
    time give the rate they would need. Against it: the rate they did, the ResNet26's
    convolutions' (:func:`convolution_rate`) and a large matrix product's (:func:`matmul_rate`),
    on the same thread count."""
    spec = CONFIGS[config]
    label = "SAN10 pairwise"
    if config != "sweep" or label not in spec["networks"] or "ResNet26" not in spec["networks"]:
        return []
    san = next(r for r in rows if r.config == config and r.network == label)
    resnet = next(r for r in rows if r.config == config and r.network == "ResNet26")
    name, overrides = spec["networks"][label]
    parts = counted_parts(config, args, name, overrides)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, spec["classes"], (args.batch,))
    fused = trainer(build(name, overrides, spec["classes"], "fused"), x, y, False)
    reference = trainer(build(*spec["networks"]["ResNet26"], spec["classes"], "eager"), x, y, False)
    lines = []
    for threads in args.threads:
        common.set_threads(threads)
        fused(), fused(), reference(), reference()
        splits, resnet_seconds = [], []
        for _ in range(args.repeats):
            splits.append(split_step(fused))
            start = time.perf_counter()
            reference()
            resnet_seconds.append(time.perf_counter() - start)
        whole, operator, kernels = min(splits)
        resnet_ms = 1000 * min(resnet_seconds)
        python, others = operator - kernels, whole - operator
        others_madds = args.batch * san.madds - parts["ops"] / 3       # the forward's, less the parts
        others_ratio = (1000 * others / others_madds) / (resnet_ms / (args.batch * resnet.madds))
        allowed = TARGETS[label] * resnet_ms / resnet.madds * san.madds / 1000
        left = allowed - python - others
        plural = "s" if threads > 1 else ""
        line = (f"- {config}, {label}, fused, {threads} thread{plural}: the fastest of {args.repeats} steps "
                f"took {1000 * whole:.0f} ms (the ResNet26's {resnet_ms:.0f} ms, taking turns): "
                f"{1000 * kernels:.0f} ms in the fused operator's kernels, {1000 * python:.0f} ms in the rest "
                f"of the operator, {1000 * others:.0f} ms in the network's other layers, the loss and the "
                f"optimizer (they did their {others_madds / 1e9:.2f} G multiply-adds of the forward at "
                f"{others_ratio:.2f} times the ResNet26's time per multiply-add); the target allows a step of "
                f"{1000 * allowed:.0f} ms, ")
        if left <= 0:
            line += "less than the operator's Python side and the other layers alone take"
        else:
            line += (f"which leaves the kernels {1000 * left:.0f} ms ({100 * left / allowed:.0f}%): their "
                     f"{parts['fused'] / 1e9:.2f} G counted multiply-adds would need "
                     f"{parts['fused'] / left / 1e9:.1f} G per second; they did "
                     f"{parts['fused'] / kernels / 1e9:.1f} G per second")
        line += (f"; on {threads} thread{plural} the ResNet26's convolutions did "
                 f"{convolution_rate(reference, args.batch * resnet.madds) / 1e9:.1f} G multiply-adds per "
                 f"second and a "
                 f"1024 x 1024 matrix product {matmul_rate() / 1e9:.1f} G.")
        lines.append(line)
    return lines


@dataclass
class Row:
    config: str
    network: str
    mode: str
    parameters: int
    madds: int
    ms: dict          # threads -> fastest step, ms
    peak_mib: float


def gamma_as_convolutions(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every :class:`sanmini.nn.Pointwise` replaced by the ``nn.Conv2d`` it computes
    (the same weights): gamma as it was computed before ``Pointwise``, for the ``ops-conv`` mode."""
    for name, child in model.named_children():
        if isinstance(child, sanmini.nn.Pointwise):
            conv = torch.nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None)
            conv.load_state_dict(child.state_dict())
            setattr(model, name, conv)
        else:
            gamma_as_convolutions(child)
    return model


class SeparateMap(torch.nn.Conv2d):
    """An ``nn.Conv2d`` that :func:`sanmini.nn.maps.one_pass` does not stack (a subclass): phi,
    psi and beta called one by one, as before ``one_pass``."""


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a SAN) with torch's max-pool and phi, psi, beta as three separate convolutions
    (the same weights): the ``ops`` path as it was before those two changes, for ``ops-before``."""
    model.pool = torch.nn.MaxPool2d(kernel_size=2, stride=2)
    for layer in model.modules():
        if isinstance(layer, (sanmini.nn.PairwiseAttention, sanmini.nn.PatchwiseAttention)):
            for name in ("conv1", "conv2", "conv3"):
                conv = getattr(layer, name)
                separate = SeparateMap(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None)
                separate.load_state_dict(conv.state_dict())
                setattr(layer, name, separate)
    return model


def build(name: str, overrides: dict, classes: int, mode: str) -> torch.nn.Module:
    kwargs = dict(overrides)
    if name.startswith("san"):
        kwargs["backend"] = "cpu"
        if mode == "fused":
            kwargs["fused"] = True
    model = sanmini.create(name, num_classes=classes, **kwargs)
    if mode == "ops-before":
        return as_before(model)
    return gamma_as_convolutions(model) if mode == "ops-conv" else model


def trainer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool):
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step():
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def modes_of(name: str, with_compile: bool) -> list[str]:
    if not name.startswith("san"):
        return ["eager"] + (["compile"] if with_compile else [])
    return (["ops-conv", "ops-before", "ops"] + (["fused"] if name == "san10_pairwise" else []) +
            (["compile"] if with_compile else []))


def measure(config: str, args) -> list[Row]:
    spec = CONFIGS[config]
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, spec["classes"], (args.batch,))
    steps, rows = {}, []
    for label, (name, overrides) in spec["networks"].items():
        torch.manual_seed(0)
        base = build(name, overrides, spec["classes"], "ops")
        state = base.state_dict()
        madds = sanmini.count_flops(base, (1, 3, args.size, args.size))
        params = sum(p.numel() for p in base.parameters())
        losses = {}
        for mode in modes_of(name, args.compile):
            model = build(name, overrides, spec["classes"], mode)
            model.load_state_dict(state)
            step = trainer(model, x, y, mode == "compile")
            common.set_threads(1)
            losses[mode] = float(step())                    # the first step checks the mode, and warms it up
            first = next(iter(losses.values()))
            if abs(losses[mode] - first) > 1e-4 * abs(first):
                sys.exit(f"{config} {label} {mode}: first step's loss {losses[mode]:.6f}, the first mode's "
                         f"{first:.6f}; not timing a model that differs")
            steps[label, mode] = step
            peak = peak_bytes(step) / 2 ** 20
            rows.append(Row(config, label, mode, params, madds, {}, peak))
    for threads in args.threads:
        common.set_threads(threads)
        seconds = take_turns({key: step for key, step in steps.items()}, repeats=args.repeats, warmup=1)
        for row in rows:
            row.ms[threads] = 1000 * min(seconds[row.network, row.mode])
    return rows


def profile(config: str, args) -> list[str]:
    """Where one ``ops`` step of each SAN of ``config`` spends its time, on one thread."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    lines = []
    for label, _, step in warm_steps(config, args, sans_only=True):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        shares = dict.fromkeys(list(GROUPS) + ["other"], 0.0)
        for e in events:
            shares[group_of(e.key)] += e.self_cpu_time_total
        calls = sum(e.count for e in events)
        parts = ", ".join(f"{g} {100 * t / total:.0f}%" for g, t in shares.items())
        lines.append(f"- {config}, {label} (ops, one thread): {total / 1000:.0f} ms of operator time in "
                     f"{calls} operator calls; {parts}.")
    return lines


def table(rows: list[Row], threads: list[int]) -> str:
    head = ["configuration", "network", "mode", "parameters", "multiply-adds per image"]
    for t in threads:
        head += [f"{t} thread{'s' if t > 1 else ''}: ms", "per multiply-add vs ResNet"]
    head.append("peak MiB")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for row in rows:
        resnet = next(r for r in rows if r.config == row.config and r.network == "ResNet26" and r.mode == "eager")
        cells = [row.config, row.network, row.mode, f"{row.parameters / 1e6:.2f} M", f"{row.madds / 1e6:.1f} M"]
        for t in threads:
            ratio = (row.ms[t] / row.madds) / (resnet.ms[t] / resnet.madds)
            cells += [f"{row.ms[t]:.0f}", f"{ratio:.2f}"]
        cells.append(f"{row.peak_mib:.0f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def verdict(rows: list[Row], threads: list[int]) -> list[str]:
    """The targets (:data:`TARGETS`) against the ``sweep`` rows of the SANs' ``ops`` and ``fused``
    modes: met where the ratio is at most the target on every thread count timed."""
    lines = []
    for label, target in TARGETS.items():
        resnet = next((r for r in rows if r.config == "sweep" and r.network == "ResNet26" and r.mode == "eager"), None)
        if resnet is None:
            continue
        for row in (r for r in rows if r.config == "sweep" and r.network == label and r.mode in ("ops", "fused")):
            ratios = [(row.ms[t] / row.madds) / (resnet.ms[t] / resnet.madds) for t in threads]
            lines.append(f"- {label}, {row.mode}: " + " / ".join(f"{x:.2f}" for x in ratios)
                         + f" on {' / '.join(map(str, threads))} threads; target {target}: "
                         + ("met" if max(ratios) <= target else "not met"))
    if not lines:
        return []
    return ["The targets, per multiply-add against the ResNet26 (sweep):\n\n" + "\n".join(lines)
            + "\n\nWhat bounds each path is below: the bytes the ops path moves (memory traffic); the "
              "multiply-adds the fused path computes again, and the time the target leaves its kernels once "
              "the network's other layers, which both paths run, have taken theirs."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per mode and thread count, fastest")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time torch.compile of each network (compiling takes minutes on a CPU)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--traffic", action=argparse.BooleanOptionalAction, default=True,
                        help="estimate each network's memory traffic per step (sanmini.traffic)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md (this section)")
    args = parser.parse_args()
    for name in ("batch", "size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if any(t < 1 for t in args.threads):
        parser.error(f"--threads must be at least 1, got {args.threads}")
    load_at_start = os.getloadavg()
    common.verify_cpu_peak_method()
    rows = [row for config in args.configs for row in measure(config, args)]
    profiled = [line for config in args.configs for line in profile(config, args)] if args.profile else []
    moved = []
    if args.traffic:
        common.set_threads(1)
        rate = copy_rate()
        moved = [f"Copy rate of this machine, one thread (torch's `copy_` of 256 MB, bytes read and written): "
                 f"{rate / 1e9:.1f} GB/s.\n"]
        moved += [line for config in args.configs for line in traffic(config, args, rows, rate)]
    recomputed = [line for config in args.configs for line in fused_madds(config, args, rows)]
    budget = [line for config in args.configs for line in kernel_budget(config, args, rows)]
    command = "python bench/book_scale.py " + " ".join(sys.argv[1:])
    lines = [f"- Batch {args.batch}, {args.size} x {args.size}; fastest of {args.repeats} steps, the networks and "
             f"modes taking turns; threads {', '.join(map(str, args.threads))} (torch and Numba); command: "
             f"`{command.strip()}`"]
    text = "\n\n".join([HEADING, common.header(f"{common.cpu_model()}, {os.cpu_count()} cores", lines, load_at_start),
                        table(rows, args.threads)] + verdict(rows, args.threads)
                       + (["Where the time of one step goes:\n\n" + "\n".join(profiled)]
                                                      if profiled else [])
                       + (["Memory traffic of one step (estimated by sanmini.traffic):\n\n" + "\n".join(moved)]
                          if moved else [])
                       + ["What the fused path computes again (multiply-adds counted from the layers' shapes, "
                          "bench/book_scale.py PASSES_OF):\n\n" + "\n".join(recomputed)]
                       + (["What the target leaves the fused path's kernels (bench/book_scale.py "
                           "kernel_budget: the rest of the step is everything outside the kernels of "
                           "sanmini/ops/fused_cpu.py: the networks' other layers, the operator's Python side, "
                           "the optimizer; the rates count only the multiply-adds above, not the gathers "
                           "and exponentials):\n\n" + "\n".join(budget)] if budget else []))
    print(text)
    if args.write:
        common.write_section(HEADING, text, {})


if __name__ == "__main__":
    main()
