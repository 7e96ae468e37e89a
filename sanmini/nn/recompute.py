"""Recomputation (activation checkpointing) of the attention weights of a SAN layer.

The weight branch of pairwise and patchwise attention, from phi(x), psi(x) to the weights alpha
that the aggregation takes (Zhao et al., CVPR 2020, Eq. 2 and 4), runs on relation tensors of
shape (N, C, K*K, L), K*K footprint positions per output pixel, L = Ho * Wo: the relation delta,
the position encoding p_i - p_j, and every layer of gamma (BN, ReLU, 1x1 conv, BN, ReLU, 1x1 conv)
and the softmax. Autograd keeps most of them for the backward pass, and they are most of the
memory of a training step. With ``recompute=True`` a layer runs the branch under
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant): autograd keeps only the branch's inputs
and its output alpha, and the branch runs a second time, in the backward pass, to rebuild the
intermediates it needs. Memory traded for one more forward of the weight branch.

The batch-norm trap: gamma's ``BatchNorm2d`` layers update their running statistics on every
training-mode forward, so a plain checkpoint would update them twice per step (once more when the
branch is recomputed). :func:`recompute` gives the recomputation a context that saves the layer's
buffers (running_mean, running_var, num_batches_tracked) before and restores them after it, so a
step updates them exactly once, as without recomputation; the recomputed forward normalises with
the batch's own statistics, as the first one did, so the gradients are the same.

Under ``torch.compile`` no such context is accepted, and the region is traced into a graph whose
nodes the partitioner may recompute in the backward graph. Whether the buffer writes traced in the
region are replayed there depends on the version: torch 2.5 and 2.6 replay them (their backward
graph writes the recomputed statistics into the buffers again: the running mean moves 1.9 times as
far as it should with momentum 0.1, and the batch count counts two), torch 2.14 does not. So under
compile the region writes no buffer of the layer: :func:`recompute` hands each training batch norm
stand-ins (copies) of its running statistics for the region to update, and after the region writes
the stand-ins' mean and variance into the real buffers and adds one to the batch count, outside
the recomputed region, once per step (a stand-in the backward graph writes again is read by no
one). Checked on torch 2.5.1, 2.6.0 and 2.14.1 (tests/test_compile.py). torch 2.4's Dynamo cannot
set a module's buffer in a compiled forward (``Unsupported: setattr(... BatchNorm2d), running_mean``),
so sanmini declares torch 2.5 or later.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def recording(module: nn.Module, *inputs: torch.Tensor) -> bool:
    """Whether autograd records a graph through ``module`` for these inputs: grad mode is on and an
    input or a parameter of the module requires grad (no_grad, inference and frozen layers: no)."""
    return torch.is_grad_enabled() and (any(t.requires_grad for t in inputs)
                                        or any(p.requires_grad for p in module.parameters()))


@contextlib.contextmanager
def buffers_kept(module: nn.Module):
    """Restore every buffer of ``module`` (batch-norm running statistics) to its value on entry."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:   # also when a non-reentrant checkpoint stops the recomputation early
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _tracked_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms of ``module`` that update running statistics in this forward."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training and m.track_running_stats]


def _compiled_region(module: nn.Module, fn: Callable[..., torch.Tensor],
                     *inputs: torch.Tensor) -> torch.Tensor:
    """:func:`recompute` under ``torch.compile``: the checkpointed region updates stand-ins of the
    running statistics; after it, the running mean and variance take the stand-ins' values and
    the batch count is incremented on its own (see the module's docstring). The swaps are Dynamo
    side effects, applied after the graph has run and none if it raises, so the module is never
    left holding the stand-ins."""
    norms = _tracked_norms(module)
    buffers = [[getattr(bn, name) for name in _STATISTICS] for bn in norms]
    for bn, own in zip(norms, buffers):
        for name, buffer in zip(_STATISTICS, own):
            if buffer is not None:
                setattr(bn, name, buffer.clone())
    out = checkpoint(fn, *inputs, use_reentrant=False)
    with torch.no_grad():
        for bn, (mean, var, count) in zip(norms, buffers):
            mean.copy_(bn.running_mean)
            var.copy_(bn.running_var)
            if count is not None:
                count.add_(1)
            bn.running_mean, bn.running_var, bn.num_batches_tracked = mean, var, count
    return out


def recompute(module: nn.Module, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``fn(*inputs)``, a part of ``module``'s forward, recomputed in the backward pass instead of
    kept; the recomputation leaves ``module``'s buffers as the first forward left them: each
    training batch norm's running statistics are updated once per step, eager or compiled.
    """
    if torch.compiler.is_compiling():
        return _compiled_region(module, fn, *inputs)
    return checkpoint(fn, *inputs, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), buffers_kept(module)))
