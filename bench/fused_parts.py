"""Benchmark of the fused pairwise operator's third forward pass on the CPU, part by part: what
bounds the rate at which the fused path does its multiply-adds.

Forward pass 3 of :mod:`sanmini.ops.fused_cpu` computes, tile by tile, gamma's input z0 (the
relation and the position differences, gathered from phi(x), psi(x) and p), gamma (two batch
norms with ReLU and two 1 x 1 maps), the softmax over the footprint and the aggregation with
beta(x). The backward passes recompute the same parts and add their gradients. For each distinct
pairwise layer of the SAN10 that the experiments' sweep trains (bench/book_scale.py, configuration
``sweep``: batch 32, 64 x 64), this bench times four kernels built from the pass's own helpers,
each doing one more part than the one before (z0; + gamma; + softmax; + aggregation, which is the
whole pass), on the layer's real inputs in evaluation (running statistics); a part's time is the
difference between two neighbours. Fastest of ``--repeats`` calls; one thread unless
``--threads``. Nothing is asserted; the figures are this machine's.

    python bench/fused_parts.py            # print the table
    python bench/fused_parts.py --write    # ... and update bench/RESULTS.md (this section)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch
from numba import prange

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from book_scale import CONFIGS, build  # noqa: E402
from common import cpu_model, header, set_threads, threads_flag, write_section  # noqa: E402

from sanmini.nn import PairwiseAttention  # noqa: E402
from sanmini.ops import fused_cpu as K  # noqa: E402
from sanmini.ops.fused import _affine, _planes  # noqa: E402
from sanmini.ops.geometry import make_window  # noqa: E402

HEADING = "## Fused weight branch: CPU, forward pass 3 by part"
PARTS = ["z0 (gather)", "gamma", "softmax", "aggregation"]


def kernel(parts: int):
    """Forward pass 3 up to and including the first ``parts`` of :data:`PARTS`."""
    @numba.njit(parallel=True, fastmath=K.FAST)
    def run(x1, x2, x3, p, src, sign, s0, t0, W1, s1, t1, W2, b2, y, lse, fl, coef, ints, zero):
        N, V, L = y.shape
        KK, Lt = src.shape
        C0, Rh, Cw, Q = s0.shape[0], W1.shape[0], W2.shape[0], KK * K.TILE
        dtype = s0.dtype
        for n in prange(N):
            Z0, U0 = np.empty((C0, Q), dtype), np.empty((C0, Q), dtype)
            Z1, U1 = np.empty((Rh, Q), dtype), np.empty((Rh, Q), dtype)
            A = np.zeros((Cw, Q), dtype)
            centre, out = np.empty((C0, K.TILE), dtype), np.empty(K.TILE, dtype)
            top, total = np.empty(K.TILE, dtype), np.empty(K.TILE, dtype)
            bits = np.empty(Q, ints.dtype)
            for l0 in range(0, Lt, K.TILE):
                nv = min(K.TILE, L - l0)
                if parts == 1:
                    K._inputs(n, l0, x1, x2, p, src, sign, centre, Z0)
                else:
                    K._gamma(n, l0, x1, x2, p, src, sign, s0, t0, W1, s1, t1, W2, b2, centre, Z0, U0,
                             Z1, U1, A, zero)
                if parts >= 3:
                    K._softmax(A, top, total, lse[n], l0, nv, fl, coef, ints, bits, zero)
                if parts >= 4:
                    K._aggregate(A, x3[n], src, l0, nv, out, y[n], zero)
    return run


def layers(batch: int, size: int):
    """(input shape, footprint, count, layer, its input) per distinct pairwise layer of the sweep's SAN10."""
    spec = CONFIGS["sweep"]
    name, overrides = spec["networks"]["SAN10 pairwise"]
    torch.manual_seed(0)
    model = build(name, overrides, spec["classes"], "ops").eval()
    seen = {}

    def hook(module, inputs, output):
        key = (tuple(inputs[0].shape), module.aggregation.kernel_size)
        seen.setdefault(key, [module, inputs[0], 0])[2] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, PairwiseAttention)]
    with torch.no_grad():
        model(torch.randn(batch, 3, size, size))
    for h in handles:
        h.remove()
    return [(key[0], key[1], count, module, x) for key, (module, x, count) in seen.items()]


@torch.no_grad()
def arguments(module: PairwiseAttention, x: torch.Tensor):
    """The pass's arrays for ``module`` on input ``x``, as :func:`sanmini.ops.fused_pairwise` makes them."""
    x1, x2, x3 = module.conv1(x), module.conv2(x), module.conv3(x)
    p = module.encoded_positions(x) if module.position_encoding else x1.new_zeros(1, 0, *x1.shape[2:])
    agg = module.aggregation
    win = make_window(x1, agg.kernel_size, agg.stride, agg.padding, agg.dilation, agg.pad_mode)
    g = module.conv_w
    s0, t0, _ = _affine(g[0].weight, g[0].bias, g[0].running_mean, g[0].running_var, g[0].eps)
    s1, t1, _ = _affine(g[3].weight, g[3].bias, g[3].running_mean, g[3].running_var, g[3].eps)
    W1, W2 = g[2].weight.flatten(1), g[5].weight.flatten(1)
    src = K.plan(*x1.shape[2:], win.out_height, win.out_width, win.kernel_size, win.stride, win.padding,
                 win.dilation, agg.pad_mode == "reflect")
    L = win.out_height * win.out_width
    y = np.empty((x.shape[0], x3.shape[1], L), np.float32)
    lse = np.empty((x.shape[0], W2.shape[0], L), np.float32)
    arrays = [t.contiguous().numpy() for t in (*_planes(x1, x2, x3, p),)]
    consts = [t.detach().contiguous().numpy() for t in (s0, t0, W1, s1, t1, W2, g[5].bias)]
    sign = 1 if module.relation == "subtraction" else -1
    return (*arrays, src, sign, *consts, y, lse, *K.exp_constants(np.float32), np.float32(0)), (W1.shape[1], W1.shape[0], W2.shape[0], x3.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per kernel, fastest")
    parser.add_argument("--threads", type=int, help="torch and Numba threads (default 1)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md (this section)")
    args = parser.parse_args()
    set_threads(args.threads or 1)
    load_at_start = os.getloadavg()
    kernels = [kernel(k) for k in range(1, len(PARTS) + 1)]
    rows, totals = [], [0.0] * len(PARTS)
    for shape, footprint, count, module, x in layers(args.batch, args.size):
        call, (c0, rh, cw, v) = arguments(module, x)
        cumulative = []
        for run in kernels:
            run(*call)                                   # compile, warm up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(*call)
                best = min(best, time.perf_counter() - start)
            cumulative.append(best)
        own = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
        totals = [t + count * o for t, o in zip(totals, own)]
        rows.append([f"{shape[1]} x {shape[2]} x {shape[3]}", str(c0), str(rh), str(cw), str(v),
                     f"{footprint} x {footprint}", str(count), *(f"{1e3 * o:.1f}" for o in own),
                     f"{1e3 * cumulative[-1]:.1f}"])
    whole = sum(totals)
    rows.append(["all layers (times the count)", "", "", "", "", "", "", *(f"{1e3 * t:.0f}" for t in totals),
                 f"{1e3 * whole:.0f}"])
    rows.append(["share of the pass", "", "", "", "", "", "", *(f"{100 * t / whole:.0f}%" for t in totals), "100%"])
    command = (f"`python bench/fused_parts.py --batch {args.batch} --size {args.size} --repeats {args.repeats}"
               f"{threads_flag()} --write`")
    lines = [f"- Shapes: the pairwise layers of the sweep's SAN10 (bench/book_scale.py) on x ({args.batch}, 3, "
             f"{args.size}, {args.size}), evaluation (running statistics), float32",
             f"- Fastest of {args.repeats} calls of each kernel, {torch.get_num_threads()} thread(s); command: {command}"]
    table = ["| layer input (C x H x W) | C0 | Rh | Cw | V | footprint | layers | "
             + " | ".join(f"{p} ms" for p in PARTS) + " | pass ms |",
             "|---|---:|---:|---:|---:|---|---:|" + "---:|" * (len(PARTS) + 1)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    largest = PARTS[int(np.argmax(totals))]
    text = "\n".join([HEADING, "", header(f"{cpu_model()}, {os.cpu_count()} cores", lines, load_at_start), "",
                      "Each part's time is the difference between the kernel that stops after it and the one "
                      "that stops before it (sanmini/ops/fused_cpu.py's helpers: _inputs, _gamma, _softmax, "
                      "_aggregate). The backward passes recompute the same parts.", "", *table, "",
                      f"On this run the largest part was {largest}. The softmax's exponentials are "
                      f"fused_cpu._exp_row's (a polynomial and a power of two built from its bits, which "
                      f"LLVM vectorises; llvmlite's LLVM has no vector math library for math.exp here: "
                      f"`numba -s` reports SVML not operational)."])
    print(text)
    if args.write:
        write_section(HEADING, text, {})
        print("\nwrote bench/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
