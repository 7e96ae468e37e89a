"""The fused weight branch's CUDA kernels (sanmini.ops.fused_cuda) against its CPU kernels, which
tests/test_fused.py checks against the plain layer: on a GPU when there is one, else in Numba's
CUDA simulator (tests/conftest.py) on tiny shapes, with few threads, small tiles and fewer blocks
than tiles, so that every loop of the kernels wraps around. The kernels are also compiled to PTX
for sm_90 and assembled, with their register counts and no spills."""
import copy

import pytest
import torch

from conftest import cuda_test_device
from sanmini.nn import PairwiseAttention
from sanmini.ops import fused_cuda, fused_pairwise
from sanmini.ops.ptx import compile_kernel
from test_fused import _pair as plain_and_fused

DEVICE = cuda_test_device()


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    if DEVICE.type == "cpu":         # the simulator runs each thread in Python: keep blocks tiny
        monkeypatch.setattr(fused_cuda, "THREADS", 8)
        monkeypatch.setattr(fused_cuda, "MAX_BLOCKS", 2)
        monkeypatch.setattr(fused_cuda, "MAX_TILE", 4)


def _pair(**kw):
    """The fused layer on the CPU kernels (test_fused's, with gamma's batch norms moved off their
    initial values), float64, and a copy on the CUDA kernels."""
    _, cpu = plain_and_fused(kernel_size=3, **kw)
    gpu = copy.deepcopy(cpu).to(DEVICE)
    for module in gpu.modules():
        if hasattr(module, "backend"):
            module.backend = "cuda"
    return cpu, gpu


def _step(model, x, g):
    x = x.to(next(model.parameters()).device).requires_grad_(True)
    model.zero_grad()
    y = model(x)
    (y * g.to(y.device)).sum().backward()
    return [y.detach().cpu(), x.grad.cpu()] + [p.grad.cpu() for p in model.parameters()]


CASES = [  # relation, position encoding, pad_mode, stride, modes
    ("subtraction", True, "reflect", 1, ("train", "eval")),
    ("summation", False, "zeros", 2, ("train",)),
]


@pytest.mark.parametrize("relation, position, pad_mode, stride, modes", CASES,
                         ids=["-".join(map(str, c[:4])) for c in CASES])
def test_cuda_kernels_equal_the_cpu_kernels_in_float64(relation, position, pad_mode, stride, modes):
    cpu, gpu = _pair(relation=relation, position_encoding=position, pad_mode=pad_mode, stride=stride)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 3, 5, dtype=torch.float64, generator=gen)       # 4 tiles (4, 4, 4, 3 pixels), 2 a block
    out_shape = (1, 8, *((s - 1) // stride + 1 for s in x.shape[2:]))
    for mode in modes:
        g = torch.randn(out_shape, dtype=torch.float64, generator=gen)
        want = _step(getattr(cpu, mode)(), x, g)
        got = _step(getattr(gpu, mode)(), x, g)
        names = ["y", "x"] + [name for name, _ in cpu.named_parameters()]
        for name, a, b in zip(names, want, got):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=f"{name} in {mode}")
    for (name, a), (_, b) in zip(cpu.named_buffers(), gpu.named_buffers()):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-13, msg=name)


def test_cuda_kernels_in_float32():
    cpu, gpu = _pair()
    cpu, gpu = cpu.float().eval(), gpu.float().eval()
    x = torch.randn(1, 6, 3, 4, generator=torch.Generator().manual_seed(2))
    g = torch.randn(1, 8, 3, 4, generator=torch.Generator().manual_seed(3))
    for a, b in zip(_step(cpu, x, g), _step(gpu, x, g)):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_tile_size_fits_shared_memory_and_refuses_what_cannot():
    for backward in (False, True):
        tile = fused_cuda.tile_size(backward, 130, 128, 64, 512, 4)       # SAN's widest layer
        assert tile >= 1
        assert fused_cuda.layout(backward, 130, 128, 64, 512, tile)["total"] * 4 <= fused_cuda.SHARED_BYTES
    with pytest.raises(ValueError, match="shared memory per pixel"):
        fused_cuda.tile_size(True, 4000, 4000, 64, 512, 8)


@pytest.mark.parametrize("name", fused_cuda.KERNELS)
def test_fused_kernels_compile_for_sm90_without_spills(name):
    build = compile_kernel(name, cc=(9, 0))
    assert ".target sm_90" in build.ptx and ".entry" in build.ptx
    assert build.count("bar.sync") > 0                               # the block works together
    assert build.count("ld.local") == build.count("st.local") == 0   # nothing in local memory
    assert build.count("fma.rn.f32") > 0
    if name == "fused_forward":                                      # float32 all through; the
        assert build.count("fma.rn.f64") == 0                        # backward's sums are float64
    if name == "fused_backward":                                     # the scattered input gradients
        assert build.count("atom.global") > 0 or build.count("red.global") > 0
    if build.registers is not None:                                  # nvJitLink was found
        assert 0 < build.registers <= 255 and build.spill_bytes == 0, build.assembler_log


def test_fused_pairwise_cuda_backend_is_chosen_by_name():
    layer = PairwiseAttention(6, 2, 8, share_planes=4, kernel_size=3).double().eval()
    x1, x3 = torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(1, 8, 4, 4, dtype=torch.float64)
    p = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    want = fused_pairwise(x1, x1, x3, p, layer.conv_w, kernel_size=3, backend="cpu")
    got = fused_pairwise(x1.to(DEVICE), x1.to(DEVICE), x3.to(DEVICE), p.to(DEVICE),
                         layer.conv_w.to(DEVICE), kernel_size=3, backend="cuda")
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-12)
