"""Tensor plumbing shared by the compiled backends (``"cpu"`` and ``"cuda"``).

Both backends have the same five kernels, with the same arguments; they differ in how a kernel is
launched and how a tensor is handed to it. :class:`KernelBackend` does the rest once: it makes the
inputs contiguous (so ``channels_last`` and sliced tensors are read right, never misread),
computes half precision (float16, bfloat16) in float32, allocates the outputs with torch,
contiguous, and views (N, Cw, K*K, Ho*Wo) tensors as (N, Cw, K*K, Ho, Wo) for the kernels.
"""
from __future__ import annotations

import numpy as np
import torch

from .geometry import Window

_ACCUMULATOR = {torch.float64: np.float64(0.0), torch.float32: np.float32(0.0)}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class KernelBackend:
    """The four operator entry points of a backend, on top of its kernels.

    ``kernels`` has the attributes ``aggregation_forward``, ``aggregation_input_grad``,
    ``aggregation_weight_grad``, ``subtraction_forward`` and ``subtraction_backward``;
    ``launch(kernel, total, tensors, scalars)`` runs one of them over ``total`` output elements.
    """

    def __init__(self, name: str, kernels, launch):
        self.name = name
        self.kernels = kernels
        self.launch = launch

    @staticmethod
    def _prepare(*tensors):
        dtype = compute_dtype(tensors[0].dtype)
        return [t.to(dtype=dtype, memory_format=torch.contiguous_format) for t in tensors]

    @staticmethod
    def _scalars(win: Window, dtype: torch.dtype) -> tuple:
        return (win.kernel_size, win.stride, win.padding, win.dilation, win.reflect,
                _ACCUMULATOR[dtype])

    @staticmethod
    def _columns(t: torch.Tensor, win: Window) -> torch.Tensor:
        """(N, C, K*K, Ho*Wo) -> (N, C, K*K, Ho, Wo), a view."""
        return t.view(t.shape[0], t.shape[1], win.taps, win.out_height, win.out_width)

    def aggregation_forward(self, x, weight, win: Window):
        out_dtype = x.dtype
        x, weight = self._prepare(x, weight)
        y = x.new_empty(x.shape[0], x.shape[1], win.out_height, win.out_width)
        self.launch(self.kernels.aggregation_forward, y.numel(),
                    (x, self._columns(weight, win), y), self._scalars(win, x.dtype))
        return y.to(out_dtype)

    def aggregation_backward(self, grad_y, x, weight, win: Window):
        out_dtype = x.dtype
        grad_y, x, weight = self._prepare(grad_y, x, weight)
        # Contiguous even where x or weight is not (a permuted view keeps its strides through
        # _prepare, and empty_like would copy them): the "cpu" kernels write outputs as flat planes.
        grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
        grad_w = torch.empty_like(weight, memory_format=torch.contiguous_format)
        scalars = self._scalars(win, x.dtype)
        self.launch(self.kernels.aggregation_input_grad, grad_x.numel(),
                    (self._columns(weight, win), grad_y, grad_x), scalars)
        self.launch(self.kernels.aggregation_weight_grad, grad_w.numel(),
                    (x, grad_y, self._columns(grad_w, win)), scalars)
        return grad_x.to(out_dtype), grad_w.to(out_dtype)

    def subtraction2_forward(self, x1, x2, win: Window):
        out_dtype = x1.dtype
        x1, x2 = self._prepare(x1, x2)
        y = x1.new_empty(x1.shape[0], x1.shape[1], win.taps, win.out_height * win.out_width)
        self.launch(self.kernels.subtraction_forward, y.numel() // win.taps,
                    (x1, x2, self._columns(y, win)), self._scalars(win, x1.dtype))
        return y.to(out_dtype)

    def subtraction2_backward(self, grad, x_shape, win: Window):
        out_dtype = grad.dtype
        (grad,) = self._prepare(grad)
        grad_x1 = grad.new_empty(x_shape)
        grad_x2 = grad.new_empty(x_shape)
        self.launch(self.kernels.subtraction_backward, grad_x1.numel(),
                    (self._columns(grad, win), grad_x1, grad_x2), self._scalars(win, grad.dtype))
        return grad_x1.to(out_dtype), grad_x2.to(out_dtype)
