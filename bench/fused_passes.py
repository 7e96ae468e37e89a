"""Benchmark of the fused pairwise weight branch, pass by pass, against the plain layer.

For every distinct pairwise attention layer of a SAN10 on a batch (B, 3, S, S) (the shapes its
layers see in a forward, found with forward hooks), two copies of the layer with the same
weights, in train mode, on the same random input:

* ``ops``: the plain layer on backend ``"cpu"`` (the weight branch as torch operations on the
  (N, C, K*K, L) tensors, the aggregation as the Numba operator), forward and backward timed;
* ``fused``: ``fused=True`` (:func:`sanmini.ops.fused_pairwise`), its forward and backward timed,
  and within them each pass of :mod:`sanmini.ops.fused_cpu` (forward 1 to 3, backward 1 and 3:
  the module's docstring says what each computes), timed by wrapping the two kernels.

Times are medians of ``--repeats`` forward-backward calls, the two copies taking turns
(:func:`common.median_seconds`), after two warm-up calls. The layers' share of a whole SAN10 step
is in the "Training step: CPU" section (bench/train_step.py). Nothing is asserted.

    python bench/fused_passes.py            # print the table
    python bench/fused_passes.py --write    # ... and update bench/RESULTS.md (this section)
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sanmini  # noqa: E402
from sanmini.nn import PairwiseAttention  # noqa: E402
from sanmini.ops import fused_cpu  # noqa: E402

from common import cpu_model, header, set_threads, threads_flag, write_section  # noqa: E402

HEADING = "## Fused weight branch: CPU, pass by pass"
# The CPU kernels' passes, by their stage numbers: the backward's second pass is stage 3 (the
# former pass 2 is folded into pass 1, sanmini/ops/fused_cpu.py).
PASSES = [("forward", 1), ("forward", 2), ("forward", 3), ("backward", 1), ("backward", 3)]


def layer_inputs(batch: int, size: int) -> list[tuple[PairwiseAttention, tuple]]:
    """One (layer, input shape) per distinct pairwise layer configuration of a SAN10, with how many
    layers of the network share it, in the order of the network."""
    model = sanmini.create("san10_pairwise", backend="cpu")
    seen = {}

    def hook(module, inputs, output):
        key = (tuple(inputs[0].shape), module.conv1.out_channels, module.conv3.out_channels,
               module.conv_w[-1].out_channels, module.aggregation.kernel_size)
        seen.setdefault(key, [module, 0])[1] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PairwiseAttention)]
    with torch.no_grad():
        model(torch.randn(batch, 3, size, size))
    for h in handles:
        h.remove()
    return [(module, key, count) for key, (module, count) in seen.items()]


class PassTimer:
    """Wraps fused_cpu.forward and .backward; adds each call's seconds under (phase, stage)."""

    def __init__(self):
        self.kernels = fused_cpu
        self.seconds = {p: 0.0 for p in PASSES}
        self.originals = (self.kernels.forward, self.kernels.backward)

    def __enter__(self):
        def timed(phase, fn):
            def call(stage, *args):
                start = time.perf_counter()
                fn(stage, *args)
                self.seconds[(phase, stage)] += time.perf_counter() - start
            return call
        self.kernels.forward = timed("forward", self.originals[0])
        self.kernels.backward = timed("backward", self.originals[1])
        return self

    def __exit__(self, *exc):
        self.kernels.forward, self.kernels.backward = self.originals


def measure(module: PairwiseAttention, shape: tuple, repeats: int) -> dict:
    plain = copy.deepcopy(module).train()
    fused = copy.deepcopy(module).train()
    fused.fused = True
    x = torch.randn(shape)

    def step(layer):
        def run():
            y = layer(x.clone().requires_grad_())
            y.square().mean().backward()
        return run

    runs = {"ops": step(plain), "fused": step(fused)}
    for run in runs.values():
        run(), run()                                     # compile (or load) and warm up
    times = {name: [] for name in runs}
    passes = {p: [] for p in PASSES}
    for _ in range(repeats):
        for name, run in runs.items():
            with PassTimer() as timer:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
            if name == "fused":
                for p in PASSES:
                    passes[p].append(timer.seconds[p])
    result = {name: statistics.median(t) for name, t in times.items()}
    result.update({p: statistics.median(v) for p, v in passes.items()})
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="images B (default 4, as bench/train_step.py on CPU)")
    parser.add_argument("--size", type=int, default=128, help="image side S (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per copy, median (default 5)")
    parser.add_argument("--threads", type=int, help="torch and Numba threads (default: one per core)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md (this section)")
    args = parser.parse_args(argv)
    set_threads(args.threads or os.cpu_count())
    load_at_start = os.getloadavg()
    torch.manual_seed(0)
    rows, totals = [], {"ops": 0.0, "fused": 0.0, **{p: 0.0 for p in PASSES}}
    for module, key, count in layer_inputs(args.batch, args.size):
        shape, rel, values, weights, k = key
        r = measure(module, shape, args.repeats)
        for name in totals:
            totals[name] += count * r[name]
        rows.append([f"{shape[1]} x {shape[2]} x {shape[3]}", str(rel + 2), str(rel), str(weights),
                     str(values), f"{k} x {k}", str(count), f"{1e3 * r['ops']:.1f}", f"{1e3 * r['fused']:.1f}",
                     *(f"{1e3 * r[p]:.1f}" for p in PASSES), f"{r['fused'] / r['ops']:.2f}"])
    rows.append(["all layers (times the count)", "", "", "", "", "", "", f"{1e3 * totals['ops']:.0f}",
                 f"{1e3 * totals['fused']:.0f}", *(f"{1e3 * totals[p]:.0f}" for p in PASSES),
                 f"{totals['fused'] / totals['ops']:.2f}"])
    command = (f"`python bench/fused_passes.py --batch {args.batch} --size {args.size} "
               f"--repeats {args.repeats}{threads_flag()} --write`")
    machine = (f"{cpu_model()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
    lines = [f"- Shapes: the pairwise layers of a SAN10 on x ({args.batch}, 3, {args.size}, {args.size}), train mode",
             f"- Median of {args.repeats} forward-backward calls per copy after two warm-up calls, the copies "
             f"taking turns; command: {command}"]
    table = ["| layer input (C x H x W) | C0 | Rh | Cw | V | footprint | layers | ops ms | fused ms | "
             "fwd 1 | fwd 2 | fwd 3 | bwd 1 | bwd 3 | fused / ops |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    faster = [row[0] for row in rows[:-1] if float(row[-1]) < 1]
    slower = [row[0] for row in rows[:-1] if float(row[-1]) >= 1]
    def layers(inputs):
        return f"the layers with input {', '.join(inputs)}" if inputs else "no layer"
    verdict = (f"On this machine the fused operator took less time than the plain layer on "
               f"{layers(faster)}, and more on {layers(slower)}.")
    text = "\n".join([HEADING, "", header(machine, lines, load_at_start), "",
                      "One forward and backward of one layer (the loss: the mean square of its output). "
                      "C0, Rh, Cw: the channels of gamma's input, hidden layer and output; V: value "
                      "channels. fwd 1 to bwd 3: the fused operator's passes (sanmini/ops/fused_cpu.py; the "
                      "backward's two are its stages 1 and 3, pass 2 being folded into pass 1), "
                      "in ms; the rest of its time is the layer's 1x1 maps phi, psi, beta and the "
                      "operator's Python side.", "", *table, "", verdict + " "
                      "What the plain layer computes once and keeps, the fused one computes again: gamma "
                      "forward in three of its five passes (its first 1x1 map also in a fourth), and the "
                      "aggregation's backward in both backward passes; in exchange it writes "
                      "no (N, C, K*K, L) tensor. The goal for a whole SAN10 pairwise step on a CPU (at "
                      "least 1.5 times the ops mode's images/s, at most 0.6 of its peak memory) is judged "
                      "on the fused row of the section \"Training step: CPU\"."])
    print(text)
    if args.write:
        write_section(HEADING, text, {})
        print("\nwrote bench/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
