"""Forward and both gradients of every op on the "torch" and "cpu" backends, in float64, against
the independent loops of tests/loops.py, over kernel sizes 1..7, stride 1-2, dilation 1-2, both pad
modes, odd and even H and W, weight channels Cw in {1, C/8, C}, and zero, "same" and wide padding;
and on 40 x 67 images with K 3 and 7, stride 1-2, both pad modes.
The "cuda" backend gets the same checks on a handful of shapes in test_ops_cuda.py."""
import itertools

import numpy as np
import pytest
import torch

import loops
from sanmini import ops

BACKENDS = ["torch", "cpu"]
N, C = 2, 16


def _shape_and_padding(shape, k, dilation):
    """Shape (9, 10) with "same" padding; shape (14, 13) with one less (0 for K <= 2)."""
    same = dilation * (k - 1) // 2
    return ((9, 10), same) if shape == "odd-even" else ((14, 13), max(0, same - 1))


GRID = list(itertools.product(range(1, 8), [1, 2], [1, 2], ["zeros", "reflect"],
                              ["odd-even", "even-odd"]))
# Wide padding (beyond the footprint's centre) reads the centre from the padding too.
WIDE = [(3, 1, 1, mode, (6, 7), 3) for mode in ["zeros", "reflect"]] + \
       [(2, 2, 1, mode, (5, 4), 3) for mode in ["zeros", "reflect"]]


def _cases():
    for k, stride, dilation, mode, shape in GRID:
        (h, w), padding = _shape_and_padding(shape, k, dilation)
        yield k, stride, dilation, mode, (h, w), padding
    yield from WIDE


CASES = list(_cases())
IDS = [f"K{k}-s{s}-d{d}-{m}-{h}x{w}-p{p}" for k, s, d, m, (h, w), p in CASES]


def _check(name, got, want):
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("cw", [1, C // 8, C])
@pytest.mark.parametrize("k, stride, dilation, mode, hw, padding", CASES, ids=IDS)
def test_aggregation(k, stride, dilation, mode, hw, padding, cw):
    gen = torch.Generator().manual_seed(k * 100 + stride * 10 + dilation)
    x = torch.randn(N, C, *hw, dtype=torch.float64, generator=gen)
    ho, wo = (loops.out_size(s, k, stride, padding, dilation) for s in hw)
    w = torch.randn(N, cw, k * k, ho * wo, dtype=torch.float64, generator=gen)
    gy = torch.randn(N, C, ho, wo, dtype=torch.float64, generator=gen)
    args = (k, stride, padding, dilation, mode)
    y_ref = loops.aggregation(x.numpy(), w.numpy(), *args)
    gx_ref, gw_ref = loops.aggregation_grads(x.numpy(), w.numpy(), gy.numpy(), *args)
    for backend in BACKENDS:
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = ops.aggregation(xr, wr, k, stride=stride, padding=padding, dilation=dilation,
                            pad_mode=mode, backend=backend)
        y.backward(gy)
        _check(f"{backend} y", y, y_ref)
        _check(f"{backend} grad x", xr.grad, gx_ref)
        _check(f"{backend} grad weight", wr.grad, gw_ref)


@pytest.mark.parametrize("k, stride, dilation, mode, hw, padding", CASES, ids=IDS)
def test_subtraction2_and_subtraction(k, stride, dilation, mode, hw, padding):
    gen = torch.Generator().manual_seed(k * 100 + stride * 10 + dilation + 1)
    x1 = torch.randn(N, C, *hw, dtype=torch.float64, generator=gen)
    x2 = torch.randn(N, C, *hw, dtype=torch.float64, generator=gen)
    ho, wo = (loops.out_size(s, k, stride, padding, dilation) for s in hw)
    g = torch.randn(N, C, k * k, ho * wo, dtype=torch.float64, generator=gen)
    args = (k, stride, padding, dilation, mode)
    kw = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=mode)
    y2_ref = loops.subtraction2(x1.numpy(), x2.numpy(), *args)
    g1_ref, g2_ref = loops.subtraction2_grads(x1.shape, g.numpy(), *args)
    y1_ref = loops.subtraction2(x1.numpy(), x1.numpy(), *args)
    for backend in BACKENDS:
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        y2 = ops.subtraction2(a, b, k, backend=backend, **kw)
        y2.backward(g)
        _check(f"{backend} subtraction2", y2, y2_ref)
        _check(f"{backend} grad x1", a.grad, g1_ref)
        _check(f"{backend} grad x2", b.grad, g2_ref)

        a = x1.clone().requires_grad_()
        y1 = ops.subtraction(a, k, backend=backend, **kw)
        y1.backward(g)
        _check(f"{backend} subtraction", y1, y1_ref)
        _check(f"{backend} grad x", a.grad, g1_ref + g2_ref)


# Images much larger than the footprint, as in a network: rows longer than the kernels' vector
# loops (the grid above has mostly border), at the SAN padding (K - 1) // 2.
LARGE = [(k, stride, 1, mode, (40, 67), (k - 1) // 2)
         for k in (3, 7) for stride in (1, 2) for mode in ("zeros", "reflect")]


@pytest.mark.parametrize("k, stride, dilation, mode, hw, padding", LARGE,
                         ids=[f"K{k}-s{s}-{m}-{h}x{w}" for k, s, _, m, (h, w), _ in LARGE])
def test_large_images(k, stride, dilation, mode, hw, padding):
    test_aggregation(k, stride, dilation, mode, hw, padding, C // 8)
    test_subtraction2_and_subtraction(k, stride, dilation, mode, hw, padding)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """torch.autograd.gradcheck on every op, zero and reflect padding, with stride and dilation."""
    gen = torch.Generator().manual_seed(0)
    for k, stride, padding, dilation, mode in [(3, 1, 1, 1, "reflect"), (3, 2, 2, 2, "zeros"),
                                               (2, 1, 0, 1, "zeros"), (5, 2, 3, 1, "reflect")]:
        kw = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=mode, backend=backend)
        x = torch.randn(1, 4, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
        x2 = torch.randn(1, 4, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
        ho, wo = (loops.out_size(s, k, stride, padding, dilation) for s in (6, 5))
        w = torch.randn(1, 2, k * k, ho * wo, dtype=torch.float64, generator=gen, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: ops.aggregation(a, b, k, **kw), (x, w))
        assert torch.autograd.gradcheck(lambda a: ops.subtraction(a, k, **kw), (x,))
        assert torch.autograd.gradcheck(lambda a, b: ops.subtraction2(a, b, k, **kw), (x, x2))
