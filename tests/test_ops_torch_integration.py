"""The ops as PyTorch custom operators: opcheck, torch.compile with no graph break, memory layouts,
half precision and autocast, batch of zero."""
import pytest
import torch

from sanmini import ops

BACKENDS = ["torch", "cpu"]


def _inputs(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 7, 6, generator=gen, dtype=dtype)
    x2 = torch.randn(2, 8, 7, 6, generator=gen, dtype=dtype)
    w = torch.randn(2, 2, 9, 42, generator=gen, dtype=dtype)
    return x, x2, w


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_opcheck(backend, pad_mode):
    x, x2, w = (t.requires_grad_() for t in _inputs())
    geom = (3, 1, 1, 1, pad_mode, backend)
    for op, args in [(torch.ops.sanmini.aggregation.default, (x, w)),
                     (torch.ops.sanmini.subtraction.default, (x,)),
                     (torch.ops.sanmini.subtraction2.default, (x, x2))]:
        result = torch.library.opcheck(op, args + geom)
        assert all(v == "SUCCESS" for v in result.values()), (op, result)


def _san_like(x, x2, w, backend):
    """A little pairwise-attention step that uses all three ops."""
    rel = ops.subtraction2(x, x2, 3, padding=1, pad_mode="reflect", backend=backend)
    alpha = (rel[:, :2] + w).softmax(dim=2)
    y = ops.aggregation(x2, alpha, 3, padding=1, pad_mode="reflect", backend=backend)
    return y + ops.subtraction(y, 3, padding=1, backend=backend).mean(dim=2).view_as(y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    """torch.compile traces the ops with no graph break (fullgraph=True), forward and backward."""
    torch._dynamo.reset()
    eager_in = [t.requires_grad_() for t in _inputs()]
    comp_in = [t.detach().clone().requires_grad_() for t in eager_in]
    compiled = torch.compile(_san_like, fullgraph=True, backend="aot_eager")
    want = _san_like(*eager_in, backend)
    got = compiled(*comp_in, backend)
    torch.testing.assert_close(got, want)
    want.square().sum().backward()
    got.square().sum().backward()
    for a, b in zip(comp_in, eager_in):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_and_non_contiguous_inputs(backend):
    """channels_last and sliced tensors are read right, and get gradients of their own layout."""
    x, x2, w = _inputs(torch.float64)
    kw = dict(padding=1, pad_mode="reflect", backend=backend)
    want_y = ops.aggregation(x, w, 3, **kw)
    want_s = ops.subtraction2(x, x2, 3, **kw)

    xcl = x.to(memory_format=torch.channels_last).requires_grad_()
    assert not xcl.is_contiguous()
    wide = torch.zeros(2, 2, 9, 84, dtype=torch.float64)
    wide[..., ::2] = w
    wnc = wide[..., ::2].requires_grad_()                     # non-contiguous view of the weights
    y = ops.aggregation(xcl, wnc, 3, **kw)
    torch.testing.assert_close(y, want_y)
    y.sum().backward()
    xc, wc = x.clone().requires_grad_(), w.clone().requires_grad_()
    ops.aggregation(xc, wc, 3, **kw).sum().backward()
    torch.testing.assert_close(xcl.grad, xc.grad)
    torch.testing.assert_close(wnc.grad, wc.grad)

    xt = x.transpose(2, 3).contiguous().transpose(2, 3)        # same values, other strides
    torch.testing.assert_close(ops.subtraction2(xt, x2.to(memory_format=torch.channels_last), 3, **kw), want_s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_permuted_inputs(backend):
    """Dense but permuted inputs, whose strides torch.empty_like would copy, give the values and
    gradients of contiguous ones."""
    x, x2, w = _inputs(torch.float64)
    kw = dict(padding=1, pad_mode="reflect", backend=backend)
    xp = x.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3).requires_grad_()
    x2p = x2.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3).requires_grad_()
    wp = w.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3).requires_grad_()
    assert not (xp.is_contiguous() or x2p.is_contiguous() or wp.is_contiguous())
    xc, x2c, wc = (t.detach().clone().requires_grad_() for t in (x, x2, w))
    for (a, b, c) in [(xp, x2p, wp), (xc, x2c, wc)]:
        y = ops.aggregation(a, c, 3, **kw)
        s = ops.subtraction2(a, b, 3, **kw)
        (y.square().sum() + s.square().sum()).backward()
    for got, want in [(xp.grad, xc.grad), (x2p.grad, x2c.grad), (wp.grad, wc.grad)]:
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu_backend(dtype):
    """float16/bfloat16 are computed in float32 and returned in the input dtype."""
    x, x2, w = _inputs()
    xh, wh = x.to(dtype), w.to(dtype)
    want = ops.aggregation(xh.float(), wh.float(), 3, padding=1, backend="torch")
    got = ops.aggregation(xh, wh, 3, padding=1, backend="cpu")
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want.to(dtype).float())


def test_autocast_casts_mixed_inputs():
    """Under torch.autocast, float32 inputs mixed with low-precision ones are cast, not rejected."""
    x, x2, w = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ops.aggregation(x, w.to(torch.bfloat16), 3, padding=1, backend="cpu")
        s = ops.subtraction2(x.to(torch.bfloat16), x2, 3, padding=1, backend="cpu")
    assert y.dtype == s.dtype == torch.bfloat16
    want = ops.aggregation(x.bfloat16().float(), w.bfloat16().float(), 3, padding=1, backend="torch")
    torch.testing.assert_close(y.float(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    y = ops.subtraction(x, 3, padding=1, backend=backend)
    assert y.shape == (0, 4, 9, 25)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_auto_backend():
    x = torch.randn(1, 2, 5, 5)
    assert ops.resolve_backend("auto", x) == "cpu"
    assert set(ops.available_backends()) >= {"torch", "cpu"}
