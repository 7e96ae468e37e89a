"""The public SAN operators: ``aggregation``, ``subtraction`` and ``subtraction2``.

Each public function checks its arguments (a clear ``TypeError``/``ValueError`` naming the argument,
before any kernel runs), picks a backend, and calls a PyTorch custom operator
(``torch.ops.sanmini.*``, made with ``torch.library.custom_op``). The custom operators carry

* the forward of the chosen backend, and, through ``register_autograd``, that backend's own
  backward (a second custom operator), so no backend differentiates through its loops;
* a fake (meta) implementation through ``register_fake``, so ``torch.compile`` traces a SAN
  without graph breaks and ``torch.library.opcheck`` passes.

Backends (``backend=``):

- ``"torch"``: plain torch, the specification (``sanmini.ops.reference``); any device and dtype.
- ``"cpu"``: Numba ``njit(parallel=True)`` kernels (``sanmini.ops.cpu``); CPU tensors.
- ``"cuda"``: Numba CUDA kernels (``sanmini.ops.cuda``); CUDA tensors, or CPU tensors under
  Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
- ``"auto"``: ``"cuda"`` for CUDA tensors, ``"cpu"`` for CPU tensors, ``"torch"`` where Numba is
  missing.

The compiled backends compute float16 and bfloat16 in float32 and return the input dtype. Under
``torch.autocast`` the inputs are cast to the autocast dtype first, as for a matrix product.
"""
# No `from __future__ import annotations` in this module: torch 2.4's custom_op reads the
# operators' type hints as objects and refuses them as strings (ValueError: infer_schema).
import importlib
import importlib.util
import os

import torch
from torch import Tensor

from .geometry import BACKENDS, Window, check_same, check_tensor, make_window

__all__ = ["aggregation", "subtraction", "subtraction2", "available_backends", "resolve_backend"]


# --- backends ----------------------------------------------------------------------------------

def _probe_cuda_target() -> tuple[bool, bool, str]:
    """(usable, simulated, reason if not usable) for Numba's CUDA target, probed once at import."""
    simulator_asked = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    if not (simulator_asked or torch.cuda.is_available()):
        return False, False, "no CUDA GPU is available"
    if not NUMBA_INSTALLED:
        return False, False, "numba is not installed (pip install numba numba-cuda)"
    try:
        import numba
        from numba import cuda
    except ImportError as err:  # numba without its CUDA target
        return False, False, f"numba.cuda cannot be imported ({err}); pip install numba-cuda"
    if numba.config.ENABLE_CUDASIM:
        return True, True, ""
    if not torch.cuda.is_available():
        return False, False, "no CUDA GPU is available"
    if not cuda.is_available():
        return False, False, "Numba finds no CUDA driver or GPU"
    return True, False, ""


# Probed once, so that torch.compile sees constants when it traces resolve_backend.
NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None
CUDA_TARGET = _probe_cuda_target()


def available_backends() -> tuple[str, ...]:
    """The backends this machine can run, besides ``"auto"``."""
    names = ["torch"]
    if NUMBA_INSTALLED:
        names.append("cpu")
    if CUDA_TARGET[0]:
        names.append("cuda")
    return tuple(names)


def resolve_backend(backend: str, x: Tensor) -> str:
    """The concrete backend (``"torch"``, ``"cpu"`` or ``"cuda"``) for ``backend`` and tensor ``x``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_gpu = x.device.type == "cuda"
    if backend == "auto":
        if on_gpu:
            usable, simulated, _ = CUDA_TARGET
            return "cuda" if usable and not simulated else "torch"
        if x.device.type == "cpu" and NUMBA_INSTALLED:
            return "cpu"
        return "torch"
    if backend == "cpu":
        if x.device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {x.device}; "
                             "use backend='cuda' or 'auto'")
        if not NUMBA_INSTALLED:
            raise ValueError("backend='cpu' needs numba (pip install numba); "
                             "backend='torch' needs nothing")
    if backend == "cuda":
        usable, simulated, reason = CUDA_TARGET
        if not usable:
            raise ValueError(f"backend='cuda' needs a CUDA GPU or Numba's CUDA simulator "
                             f"(NUMBA_ENABLE_CUDASIM=1 before numba is imported): {reason}")
        if simulated and x.device.type != "cpu":
            raise ValueError(f"backend='cuda' under Numba's CUDA simulator needs CPU tensors, got {x.device}")
        if not simulated and not on_gpu:
            raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {x.device}; "
                             "move them with .cuda(), or use backend='cpu' or 'auto'")
    return backend


def _backend(name: str):
    """The module or object with the four entry points of backend ``name``."""
    if name == "torch":
        return importlib.import_module(".reference", __package__)
    return importlib.import_module(f".{name}", __package__).backend


def _window(x: Tensor, kernel_size: int, stride: int, padding: int, dilation: int, pad_mode: str) -> Window:
    return Window(x.shape[-2], x.shape[-1], kernel_size, stride, padding, dilation, pad_mode)


# --- custom operators --------------------------------------------------------------------------
# Arguments after the tensors are always: kernel_size, stride, padding, dilation, pad_mode, backend.

@torch.library.custom_op("sanmini::aggregation", mutates_args=())
def _aggregation_op(x: Tensor, weight: Tensor, kernel_size: int, stride: int, padding: int,
                    dilation: int, pad_mode: str, backend: str) -> Tensor:
    win = _window(x, kernel_size, stride, padding, dilation, pad_mode)
    return _backend(backend).aggregation_forward(x, weight, win)


@_aggregation_op.register_fake
def _(x, weight, kernel_size, stride, padding, dilation, pad_mode, backend):
    win = _window(x, kernel_size, stride, padding, dilation, pad_mode)
    return x.new_empty(x.shape[0], x.shape[1], win.out_height, win.out_width)


@torch.library.custom_op("sanmini::aggregation_backward", mutates_args=())
def _aggregation_backward_op(grad_y: Tensor, x: Tensor, weight: Tensor, kernel_size: int,
                             stride: int, padding: int, dilation: int, pad_mode: str,
                             backend: str) -> tuple[Tensor, Tensor]:
    win = _window(x, kernel_size, stride, padding, dilation, pad_mode)
    return _backend(backend).aggregation_backward(grad_y, x, weight, win)


@_aggregation_backward_op.register_fake
def _(grad_y, x, weight, *args):
    return x.new_empty(x.shape), weight.new_empty(weight.shape)


def _aggregation_setup(ctx, inputs, output):
    x, weight, *ctx.args = inputs
    ctx.save_for_backward(x, weight)


def _aggregation_grad(ctx, grad_y):
    x, weight = ctx.saved_tensors
    grad_x, grad_weight = torch.ops.sanmini.aggregation_backward(grad_y, x, weight, *ctx.args)
    return (grad_x, grad_weight) + (None,) * len(ctx.args)


_aggregation_op.register_autograd(_aggregation_grad, setup_context=_aggregation_setup)


@torch.library.custom_op("sanmini::subtraction2", mutates_args=())
def _subtraction2_op(x1: Tensor, x2: Tensor, kernel_size: int, stride: int, padding: int,
                     dilation: int, pad_mode: str, backend: str) -> Tensor:
    win = _window(x1, kernel_size, stride, padding, dilation, pad_mode)
    return _backend(backend).subtraction2_forward(x1, x2, win)


@torch.library.custom_op("sanmini::subtraction", mutates_args=())
def _subtraction_op(x: Tensor, kernel_size: int, stride: int, padding: int, dilation: int,
                    pad_mode: str, backend: str) -> Tensor:
    win = _window(x, kernel_size, stride, padding, dilation, pad_mode)
    return _backend(backend).subtraction2_forward(x, x, win)


@_subtraction2_op.register_fake
def _(x1, x2, kernel_size, stride, padding, dilation, pad_mode, backend):
    win = _window(x1, kernel_size, stride, padding, dilation, pad_mode)
    return x1.new_empty(x1.shape[0], x1.shape[1], win.taps, win.out_height * win.out_width)


@_subtraction_op.register_fake
def _(x, kernel_size, stride, padding, dilation, pad_mode, backend):
    win = _window(x, kernel_size, stride, padding, dilation, pad_mode)
    return x.new_empty(x.shape[0], x.shape[1], win.taps, win.out_height * win.out_width)


@torch.library.custom_op("sanmini::subtraction2_backward", mutates_args=())
def _subtraction2_backward_op(grad: Tensor, height: int, width: int, kernel_size: int,
                              stride: int, padding: int, dilation: int, pad_mode: str,
                              backend: str) -> tuple[Tensor, Tensor]:
    win = Window(height, width, kernel_size, stride, padding, dilation, pad_mode)
    x_shape = (grad.shape[0], grad.shape[1], height, width)
    return _backend(backend).subtraction2_backward(grad, x_shape, win)


@_subtraction2_backward_op.register_fake
def _(grad, height, width, *args):
    shape = (grad.shape[0], grad.shape[1], height, width)
    return grad.new_empty(shape), grad.new_empty(shape)


def _subtraction2_setup(ctx, inputs, output):
    x1, _, *ctx.args = inputs
    ctx.size = tuple(x1.shape[-2:])


def _subtraction_setup(ctx, inputs, output):
    x, *ctx.args = inputs
    ctx.size = tuple(x.shape[-2:])


def _subtraction2_grad(ctx, grad):
    grad_x1, grad_x2 = torch.ops.sanmini.subtraction2_backward(grad, *ctx.size, *ctx.args)
    return (grad_x1, grad_x2) + (None,) * len(ctx.args)


def _subtraction_grad(ctx, grad):
    grad_x1, grad_x2 = torch.ops.sanmini.subtraction2_backward(grad, *ctx.size, *ctx.args)
    return (grad_x1 + grad_x2,) + (None,) * len(ctx.args)


_subtraction2_op.register_autograd(_subtraction2_grad, setup_context=_subtraction2_setup)
_subtraction_op.register_autograd(_subtraction_grad, setup_context=_subtraction_setup)


# --- public API ----------------------------------------------------------------------------------

def _autocast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Under torch.autocast, cast float32 inputs to the autocast dtype, as for a matrix product."""
    device_type = tensors[0].device.type
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        return tuple(t.to(dtype) if t.dtype == torch.float32 else t for t in tensors)
    return tensors


def aggregation(x: Tensor, weight: Tensor, kernel_size: int, stride: int = 1, padding: int = 0,
                dilation: int = 1, pad_mode: str = "zeros", backend: str = "auto") -> Tensor:
    r"""Aggregate features over each footprint with per-position weights.

    ``y[n, c, p] = sum_j weight[n, c % Cw, j, p] * x[n, c, window_j(p)]``: the sum
    :math:`y_i = \sum_{j \in R(i)} \alpha_{ij} \odot \beta(x_j)` of Zhao et al., CVPR 2020,
    Eq. (2) and (4), with ``weight`` holding alpha and ``x`` holding beta(x). Channel c uses weight
    channel ``c % Cw``, so one weight channel is shared by C / Cw channels (``share_planes``).

    Args:
        x: (N, C, H, W) features beta(x).
        weight: (N, Cw, K*K, Ho*Wo) weights alpha, with C % Cw == 0.
        kernel_size: K, the footprint is K x K.
        stride, padding, dilation: as for a convolution; ``Ho = (H + 2*padding - dilation*(K-1) - 1)
            // stride + 1``.
        pad_mode: ``"zeros"`` or ``"reflect"`` (mirror padding, as the reference SAN models use).
        backend: ``"auto"``, ``"torch"``, ``"cpu"`` or ``"cuda"`` (see :mod:`sanmini.ops`).

    Returns:
        (N, C, Ho, Wo).
    """
    check_tensor("x", x, 4)
    check_tensor("weight", weight, 4)
    win = make_window(x, kernel_size, stride, padding, dilation, pad_mode)
    x, weight = _autocast(x, weight)
    check_same(("x", "weight"), (x, weight))
    n, c = x.shape[:2]
    cw = weight.shape[1]
    if cw == 0 or c % cw != 0:
        raise ValueError(f"weight has {cw} channels, which must divide the {c} channels of x "
                         "(C % Cw == 0)")
    expected = (n, cw, win.taps, win.out_height * win.out_width)
    if tuple(weight.shape) != expected:
        raise ValueError(f"weight must have shape (N, Cw, K*K, Ho*Wo) = {expected} for x of shape "
                         f"{tuple(x.shape)} and kernel_size={kernel_size}, got {tuple(weight.shape)}")
    backend = resolve_backend(backend, x)
    return torch.ops.sanmini.aggregation(x, weight, kernel_size, stride, padding, dilation,
                                         pad_mode, backend)


def subtraction(x: Tensor, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                pad_mode: str = "zeros", backend: str = "auto") -> Tensor:
    r"""The relation x_i - x_j between each centre and every position of its footprint.

    ``y[n, c, j, p] = x[n, c, centre(p)] - x[n, c, window_j(p)]``, the subtraction relation
    :math:`\delta(x_i, x_j) = \varphi(x_i) - \psi(x_j)` of Zhao et al., CVPR 2020, Eq. (3), with
    phi = psi. The centre is tap ((K-1)//2, (K-1)//2) of the footprint.

    Args:
        x: (N, C, H, W).
        kernel_size, stride, padding, dilation, pad_mode, backend: as for :func:`aggregation`.

    Returns:
        (N, C, K*K, Ho*Wo).
    """
    check_tensor("x", x, 4)
    make_window(x, kernel_size, stride, padding, dilation, pad_mode)
    (x,) = _autocast(x)
    backend = resolve_backend(backend, x)
    return torch.ops.sanmini.subtraction(x, kernel_size, stride, padding, dilation, pad_mode, backend)


def subtraction2(x1: Tensor, x2: Tensor, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, pad_mode: str = "zeros", backend: str = "auto") -> Tensor:
    r"""The relation phi(x_i) - psi(x_j), with phi(x) = ``x1`` and psi(x) = ``x2`` given.

    ``y[n, c, j, p] = x1[n, c, centre(p)] - x2[n, c, window_j(p)]``: the subtraction relation of
    Zhao et al., CVPR 2020, Eq. (3), as the pairwise SAN block uses it.

    Args:
        x1, x2: (N, C, H, W), the same shape.
        kernel_size, stride, padding, dilation, pad_mode, backend: as for :func:`aggregation`.

    Returns:
        (N, C, K*K, Ho*Wo).
    """
    check_tensor("x1", x1, 4)
    check_tensor("x2", x2, 4)
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and "
                         f"{tuple(x2.shape)}")
    make_window(x1, kernel_size, stride, padding, dilation, pad_mode, name="x1")
    x1, x2 = _autocast(x1, x2)
    check_same(("x1", "x2"), (x1, x2))
    backend = resolve_backend(backend, x1)
    return torch.ops.sanmini.subtraction2(x1, x2, kernel_size, stride, padding, dilation,
                                          pad_mode, backend)
