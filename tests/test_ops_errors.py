"""Bad input gets a TypeError or ValueError that names the argument, before any kernel runs."""
import os
import subprocess
import sys

import pytest
import torch

from sanmini import ops

X = torch.randn(2, 8, 6, 6)
W = torch.randn(2, 2, 9, 36)


def agg(**over):
    kw = dict(x=X, weight=W, kernel_size=3, padding=1)
    kw.update(over)
    return ops.aggregation(**kw)


CASES = [
    ("x not a tensor", lambda: agg(x=X.numpy()), TypeError, r"x must be a torch.Tensor"),
    ("x ndim", lambda: agg(x=X[0]), ValueError, r"x must have 4 dimensions, got shape \(8, 6, 6\)"),
    ("weight ndim", lambda: agg(weight=W[0]), ValueError, r"weight must have 4 dimensions"),
    ("integer x", lambda: agg(x=X.long(), weight=W.long()), TypeError, r"x must be a floating-point tensor"),
    ("C % Cw", lambda: agg(weight=torch.randn(2, 3, 9, 36)), ValueError, r"weight has 3 channels, which must divide the 8 channels of x"),
    ("weight shape", lambda: agg(weight=torch.randn(2, 2, 9, 35)), ValueError, r"weight must have shape \(N, Cw, K\*K, Ho\*Wo\) = \(2, 2, 9, 36\)"),
    ("weight batch", lambda: agg(weight=torch.randn(1, 2, 9, 36)), ValueError, r"weight must have shape"),
    ("kernel_size 0", lambda: agg(kernel_size=0), ValueError, r"kernel_size must be a positive int, got 0"),
    ("kernel_size float", lambda: agg(kernel_size=3.0), TypeError, r"kernel_size must be an int, got float"),
    ("kernel_size tuple", lambda: agg(kernel_size=(3, 3)), TypeError, r"kernel_size must be an int, got tuple"),
    ("stride 0", lambda: agg(stride=0), ValueError, r"stride must be a positive int, got 0"),
    ("dilation 0", lambda: agg(dilation=0), ValueError, r"dilation must be a positive int, got 0"),
    ("padding -1", lambda: agg(padding=-1), ValueError, r"padding must be an int >= 0, got -1"),
    ("reflect too wide", lambda: agg(padding=6, pad_mode="reflect", weight=torch.randn(2, 2, 9, 256)), ValueError, r"padding=6 with pad_mode='reflect' must be smaller than the input size of x, got H=6, W=6"),
    ("empty output", lambda: agg(kernel_size=9, padding=0), ValueError, r"the output would be empty.*Ho=-2"),
    ("pad_mode", lambda: agg(pad_mode="circular"), ValueError, r"pad_mode must be one of \('zeros', 'reflect'\), got 'circular'"),
    ("backend", lambda: agg(backend="cupy"), ValueError, r"backend must be one of \('auto', 'torch', 'cpu', 'cuda'\), got 'cupy'"),
    ("dtypes", lambda: agg(weight=W.double()), TypeError, r"weight has dtype torch.float64 but x has dtype torch.float32"),
    ("devices", lambda: agg(weight=W.to("meta")), ValueError, r"weight is on meta but x is on cpu"),
    ("subtraction ndim", lambda: ops.subtraction(X[0], 3), ValueError, r"x must have 4 dimensions"),
    ("subtraction kernel", lambda: ops.subtraction(X, -1), ValueError, r"kernel_size must be a positive int, got -1"),
    ("subtraction empty", lambda: ops.subtraction(X, 7), ValueError, r"the output would be empty"),
    ("subtraction2 shapes", lambda: ops.subtraction2(X, X[:, :4], 3), ValueError, r"x1 and x2 must have the same shape"),
    ("subtraction2 dtypes", lambda: ops.subtraction2(X, X.double(), 3), TypeError, r"x2 has dtype torch.float64 but x1 has dtype torch.float32"),
    ("subtraction2 reflect", lambda: ops.subtraction2(X, X, 3, padding=6, pad_mode="reflect"), ValueError, r"must be smaller than the input size of x1"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine with no GPU")
def test_cuda_backend_without_gpu_or_simulator():
    """With no GPU and no simulator, backend='cuda' names what it needs; 'auto' still runs."""
    script = (
        "import torch\n"
        "from sanmini import ops\n"
        "x = torch.randn(1, 2, 5, 5)\n"
        "assert ops.resolve_backend('auto', x) == 'cpu'\n"
        "assert 'cuda' not in ops.available_backends()\n"
        "try:\n"
        "    ops.subtraction(x, 3, backend='cuda')\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "backend='cuda' needs a CUDA GPU or Numba's CUDA simulator" in out.stdout


def test_cpu_backend_rejects_other_devices():
    with pytest.raises(ValueError, match=r"backend='cpu' needs CPU tensors, got tensors on meta"):
        ops.subtraction(X.to("meta"), 3, backend="cpu")
