"""sanmini.ops.max_pool2x2 and sanmini.nn.MaxPool2x2, the SAN's 2 x 2 max-pool: the same values and
gradients as ``torch.nn.functional.max_pool2d(x, 2, 2)``, bit for bit, on every backend, with ties,
NaNs, odd sizes and strided inputs; gradcheck; opcheck; the SAN built with it."""
import pytest
import torch
import torch.nn.functional as F

import sanmini
from sanmini.nn import MaxPool2x2
from sanmini.ops import max_pool2x2
from sanmini.ops.functional import NUMBA_INSTALLED
from sanmini.ops.max_pool import resolve_pool_backend

needs_numba = pytest.mark.skipif(not NUMBA_INSTALLED, reason="the cpu backend needs numba")


def _pool_and_grad(fn, x, g):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    (grad,) = torch.autograd.grad(y, x, g)
    return y, grad


def _assert_same(a, b):
    """Equal bit for bit, NaNs in the same places."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 7), (3, 1, 2, 3), (2, 4, 9, 2)])
def test_values_and_gradients_equal_torch_max_pool(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    x[x < 0.3] = 0.0                            # ties, as after a ReLU: the first maximum gets the gradient
    x.view(-1)[::7] = torch.nan                 # a NaN is the maximum of its window, and gets the gradient
    x[0, 0, 0, :2] = 1.5                        # two equal maxima in one window, not zero
    g = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, dtype=dtype)
    y, grad = _pool_and_grad(lambda t: max_pool2x2(t, backend="cpu"), x, g)
    y_ref, grad_ref = _pool_and_grad(lambda t: F.max_pool2d(t, 2, 2), x, g)
    _assert_same(y, y_ref)
    _assert_same(grad, grad_ref)
    assert y.is_contiguous() and grad.is_contiguous()


@needs_numba
def test_a_strided_input_is_read_right():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 7, 8).transpose(1, 3)                     # (2, 8, 7, 6), not contiguous
    assert not x.is_contiguous()
    g = torch.randn(2, 8, 3, 3)
    for a, b in zip(_pool_and_grad(lambda t: max_pool2x2(t, backend="cpu"), x, g),
                    _pool_and_grad(lambda t: F.max_pool2d(t, 2, 2), x, g)):
        _assert_same(a, b)


@needs_numba
def test_gradcheck_in_float64():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)   # no ties: the max is differentiable
    assert torch.autograd.gradcheck(lambda t: max_pool2x2(t, backend="cpu"), (x,))


@needs_numba
def test_the_operators_pass_opcheck():
    x = torch.randn(2, 3, 6, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.sanmini.max_pool2x2, (x,))
    y, position = torch.ops.sanmini.max_pool2x2(x.detach())
    torch.library.opcheck(torch.ops.sanmini.max_pool2x2_backward, (torch.randn_like(y), position, 6, 5))


@needs_numba
def test_compiles_with_no_graph_break():
    torch._dynamo.reset()
    x = torch.randn(2, 3, 8, 8)
    fn = torch.compile(lambda t: max_pool2x2(t, backend="cpu") * 2, fullgraph=True)
    _assert_same(fn(x), F.max_pool2d(x, 2, 2) * 2)


def test_backends_are_chosen_by_device_and_dtype():
    x = torch.randn(1, 1, 4, 4)
    assert resolve_pool_backend("torch", x) == "torch"
    assert resolve_pool_backend("auto", x.half()) == "torch"
    assert resolve_pool_backend("cuda", x) == "torch"
    if NUMBA_INSTALLED:
        assert resolve_pool_backend("auto", x) == "cpu"
        assert resolve_pool_backend("auto", x.double()) == "cpu"
        assert resolve_pool_backend("cpu", x.bfloat16()) == "torch"       # half precision: torch's pool
        with pytest.raises(ValueError, match=r"backend='cpu' needs CPU tensors, got a tensor on meta"):
            max_pool2x2(x.to("meta"), backend="cpu")
    for dtype in (torch.bfloat16, torch.float16):
        for backend in ("auto", "cpu", "torch"):
            if backend == "cpu" and not NUMBA_INSTALLED:
                continue
            _assert_same(max_pool2x2(x.to(dtype), backend=backend), F.max_pool2d(x.to(dtype), 2, 2))


@needs_numba
def test_a_san_trains_under_bfloat16_autocast_with_the_cpu_backend():
    """Under torch.autocast the pool sees bfloat16 tensors: torch's max-pool takes them, no error."""
    torch.manual_seed(0)
    model = sanmini.create("san10_pairwise", num_classes=3, width=16, share_planes=4, kernels=(3, 3, 3, 3, 3),
                           backend="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 64, 64)).float().square().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("x, error, message", [
    (torch.randn(3, 4, 4), ValueError, r"x must have 4 dimensions, got shape \(3, 4, 4\)"),
    (torch.randn(1, 2, 1, 4), ValueError, r"x must be at least 2 x 2 pixels .* got \(1, 2, 1, 4\)"),
    ([[1.0]], TypeError, r"x must be a torch.Tensor, got list"),
])
def test_a_wrong_input_is_named(x, error, message):
    with pytest.raises(error, match=message):
        max_pool2x2(x)


def test_a_wrong_backend_is_named():
    with pytest.raises(ValueError, match=r"backend must be one of .*, got 'gpu'"):
        max_pool2x2(torch.randn(1, 1, 2, 2), backend="gpu")
    with pytest.raises(ValueError, match=r"backend must be one of .*, got 'gpu'"):
        MaxPool2x2(backend="gpu")


def test_the_san_pools_with_it_and_set_backend_reaches_it():
    model = sanmini.create("san10_pairwise", num_classes=3, width=16, share_planes=4, kernels=(3, 3, 3, 3, 3), backend="cpu")
    assert isinstance(model.pool, MaxPool2x2) and isinstance(model.pool, torch.nn.MaxPool2d)
    assert model.pool.backend == "cpu"
    sanmini.nn.set_backend(model, "torch")
    assert model.pool.backend == "torch"
    assert not [k for k in model.state_dict() if k.startswith("pool")]   # no parameters: checkpoints load as before


@needs_numba
def test_a_san_step_is_the_same_with_either_pool():
    """A SAN10's loss and every parameter's gradient, its pools on the cpu backend or on torch's."""
    torch.manual_seed(0)
    kw = dict(num_classes=4, width=16, share_planes=4, kernels=(3, 3, 3, 3, 3), backend="cpu")
    model = sanmini.create("san10_pairwise", **kw)
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for backend in ("cpu", "torch"):
        model.pool.backend = backend
        model.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)
