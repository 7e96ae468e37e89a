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


def recompute(module: nn.Module, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``fn(*inputs)``, a part of ``module``'s forward, recomputed in the backward pass instead of
    kept; the recomputation leaves ``module``'s buffers as the first forward left them.

    Under ``torch.compile`` the region is traced once: its buffer updates are in the forward graph
    only, and the partitioner recomputes values, not updates, so no context is needed (torch.compile
    accepts none but selective-checkpointing ones).
    """
    if torch.compiler.is_compiling():
        return checkpoint(fn, *inputs, use_reentrant=False)
    return checkpoint(fn, *inputs, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), buffers_kept(module)))
