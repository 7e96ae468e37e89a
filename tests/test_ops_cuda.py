"""The "cuda" backend: Numba CUDA kernels, on a GPU when there is one, else in Numba's CUDA
simulator on CPU tensors (tests/conftest.py), on a handful of small shapes (the simulator runs
about 100 us per thread). Each kernel is also compiled to PTX for sm_90 with no GPU, so a real GPU
is never the first place a kernel is compiled."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import loops
from conftest import cuda_test_device
from sanmini import ops

DEVICE = cuda_test_device()
# (K, stride, padding, dilation, pad_mode, (H, W), Cw)
SMALL = [
    (3, 1, 1, 1, "reflect", (5, 4), 1),
    (3, 2, 2, 2, "zeros", (5, 6), 2),
    (2, 1, 0, 1, "zeros", (4, 3), 2),
    (5, 2, 3, 1, "reflect", (4, 5), 1),
]


def _t(a):
    return torch.from_numpy(a).to(DEVICE)


@pytest.mark.parametrize("k, stride, padding, dilation, mode, hw, cw", SMALL)
def test_cuda_backend_against_loops(k, stride, padding, dilation, mode, hw, cw):
    rng = np.random.default_rng(k + stride + padding)
    n, c = 1, 2
    args = (k, stride, padding, dilation, mode)
    kw = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=mode, backend="cuda")
    ho, wo = (loops.out_size(s, k, stride, padding, dilation) for s in hw)
    x1, x2 = rng.standard_normal((2, n, c, *hw))
    w = rng.standard_normal((n, cw, k * k, ho * wo))
    gy = rng.standard_normal((n, c, ho, wo))
    g = rng.standard_normal((n, c, k * k, ho * wo))

    xt, wt = _t(x1).requires_grad_(), _t(w).requires_grad_()
    y = ops.aggregation(xt, wt, k, **kw)
    y.backward(_t(gy))
    gx_ref, gw_ref = loops.aggregation_grads(x1, w, gy, *args)
    np.testing.assert_allclose(y.detach().cpu().numpy(), loops.aggregation(x1, w, *args), atol=1e-12)
    np.testing.assert_allclose(xt.grad.cpu().numpy(), gx_ref, atol=1e-12)
    np.testing.assert_allclose(wt.grad.cpu().numpy(), gw_ref, atol=1e-12)

    at, bt = _t(x1).requires_grad_(), _t(x2).requires_grad_()
    y2 = ops.subtraction2(at, bt, k, **kw)
    y2.backward(_t(g))
    g1_ref, g2_ref = loops.subtraction2_grads(x1.shape, g, *args)
    np.testing.assert_allclose(y2.detach().cpu().numpy(), loops.subtraction2(x1, x2, *args), atol=1e-12)
    np.testing.assert_allclose(at.grad.cpu().numpy(), g1_ref, atol=1e-12)
    np.testing.assert_allclose(bt.grad.cpu().numpy(), g2_ref, atol=1e-12)

    at = _t(x1).requires_grad_()
    y1 = ops.subtraction(at, k, **kw)
    y1.backward(_t(g))
    np.testing.assert_allclose(y1.detach().cpu().numpy(), loops.subtraction2(x1, x1, *args), atol=1e-12)
    np.testing.assert_allclose(at.grad.cpu().numpy(), g1_ref + g2_ref, atol=1e-12)


def test_cuda_backend_float32_matches_torch_backend():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 5, 5, generator=gen).to(DEVICE)
    w = torch.randn(1, 2, 9, 25, generator=gen).to(DEVICE)
    kw = dict(padding=1, pad_mode="reflect")
    want = ops.aggregation(x, w, 3, backend="torch", **kw)
    got = ops.aggregation(x, w, 3, backend="cuda", **kw)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_cuda_backend_gradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=gen).to(DEVICE).requires_grad_()
    x2 = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=gen).to(DEVICE).requires_grad_()
    w = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=gen).to(DEVICE).requires_grad_()
    kw = dict(padding=1, stride=2, pad_mode="reflect", backend="cuda")
    assert torch.autograd.gradcheck(lambda a, b: ops.aggregation(a, b, 2, **kw), (x, w))
    assert torch.autograd.gradcheck(lambda a, b: ops.subtraction2(a, b, 2, **kw), (x, x2))


PTX_SCRIPT = textwrap.dedent("""
    import types
    import numba
    import numba.cuda.dispatcher
    from numba import cuda
    # Device functions are compiled for the current device's compute capability; with no GPU
    # there is none, so stand in an sm_90 device for the duration of this check.
    numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    from sanmini.ops import cuda as kernels
    for dtype in (numba.float32, numba.float64):
        for name in kernels.KERNEL_ARRAY_NDIMS:
            kernel = getattr(kernels, name)
            ptx, _ = cuda.compile_ptx(kernel.py_func, kernels.kernel_signature(name, dtype), cc=(9, 0))
            assert ".target sm_90" in ptx and ".entry" in ptx and "ld.global" in ptx, name
            print("compiled", name, dtype)
""")


def test_every_kernel_compiles_to_ptx_for_sm90():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    out = subprocess.run([sys.executable, "-c", PTX_SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("compiled") == 10, out.stdout
