"""sanmini.ops.ptx: kernels compiled to PTX and assembled, with no GPU, from a process that may run
Numba's CUDA simulator (tests/conftest.py turns it on where there is no GPU): for sm_90, and every
kernel of the library for each GPU students rent (sm_75, sm_80, sm_86, sm_89, sm_90), within each
one's default limits per block."""
import textwrap

import pytest

from sanmini.ops.ptx import (DEFAULT_SHARED_BYTES_PER_BLOCK, TARGETS, KernelBuild, compile_kernel,
                             compile_library, library_kernels, limits_exceeded)


def test_library_kernel_compiles_for_sm90():
    build = compile_kernel("aggregation_forward", cc=(9, 0))
    assert build.name == "aggregation_forward" and build.cc == (9, 0)
    assert ".target sm_90" in build.ptx and ".entry" in build.ptx
    assert build.count("st.global") == 1                              # one output per thread
    assert build.count("fma.rn.f32") > 0 and build.count("fma.rn.f64") == 0
    # two loads per multiply-add of the footprint: the weight and the input
    assert build.count("ld.global.f32") == 2 * build.count("fma.rn.f32")
    if build.registers is not None:                                   # nvJitLink was found
        assert 0 < build.registers <= 255 and build.spill_bytes == 0, build.assembler_log


def test_float64_kernel_computes_in_float64():
    build = compile_kernel("aggregation_input_grad", dtype="float64")
    assert build.count("fma.rn.f64") > 0 and build.count("ld.global.f64") > 0


def test_kernel_function_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "mykernels.py").write_text(textwrap.dedent("""
        from numba import cuda

        @cuda.jit
        def double(x, y, n):
            i = cuda.grid(1)
            if i < n:
                acc = 0.0              # a Python float: the sum is done in float64
                acc += x[i] * 2
                y[i] = acc
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import mykernels

    build = compile_kernel(mykernels.double, "(float32[::1], float32[::1], int64)", cc=(8, 0))
    assert isinstance(build, KernelBuild) and build.name == "double"
    assert ".target sm_80" in build.ptx
    assert build.count("cvt.f64.f32") == 1 and build.count("fma.rn.f64") == 1
    assert build.count("ld.global.f32") == 1 and build.count("st.global.f32") == 1


def test_errors_are_clear():
    with pytest.raises(ValueError, match="signature"):
        compile_kernel(lambda x: x)
    with pytest.raises(RuntimeError, match="no kernel 'nonsense'"):
        compile_kernel("nonsense")


@pytest.mark.slow
@pytest.mark.parametrize("cc", sorted(TARGETS), ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_every_library_kernel_assembles_within_the_default_limits_of(cc):
    """Operators and fused kernels in float32, as the library launches them: registers per thread
    and per block, no spills, shared memory (static + the most dynamic a launch asks) within the
    48 KB a block gets without opting in. One process per target (a minute on one core)."""
    launches = library_kernels()
    builds = compile_library(cc)
    assert [b.name for b in builds] == list(launches)
    assert len(launches) == 7 and {"fused_forward", "fused_backward"} <= set(launches)
    for build in builds:
        assert f".target sm_{cc[0]}{cc[1]}" in build.ptx and ".entry" in build.ptx, build.name
        assert build.registers is not None, f"{build.name} was not assembled: {build.assembler_log}"
        assert build.shared_bytes is not None, build.assembler_log
        assert limits_exceeded(build, *launches[build.name]) == []


def _build(**kw):
    fields = dict(name="k", cc=(7, 5), ptx="", registers=64, spill_bytes=0, assembler_log="log",
                  shared_bytes=0)
    return KernelBuild(**{**fields, **kw})


def test_limits_name_what_does_not_fit():
    assert limits_exceeded(_build(), 256) == []
    assert limits_exceeded(_build(registers=255), 256) == []                  # 65280 <= 65536
    assert limits_exceeded(_build(registers=256), 128) == [
        "k for sm_75: 256 registers per thread, more than 255"]
    assert limits_exceeded(_build(registers=200), 512) == [
        "k for sm_75: 200 registers x 512 threads = 102400 per block, more than 65536"]
    assert limits_exceeded(_build(spill_bytes=8), 128) == ["k for sm_75: 8 bytes of spills per thread"]
    assert limits_exceeded(_build(shared_bytes=16), 128, DEFAULT_SHARED_BYTES_PER_BLOCK) == [
        f"k for sm_75: 16 + {DEFAULT_SHARED_BYTES_PER_BLOCK} bytes of shared memory per block, more than "
        f"the default {DEFAULT_SHARED_BYTES_PER_BLOCK}"]
    assert "not assembled" in limits_exceeded(_build(registers=None), 128)[0]
    with pytest.raises(ValueError, match=r"cc must be one of \[\(7, 5\)"):
        compile_library((6, 1))


# Two logs as the assemblers wrote them for aggregation_forward at sm_75 (2026-12-06): nvJitLink
# (cuda-core's Linker, the lock's cu13 wheels) and ptxas -v from nvidia-cuda-nvcc-cu12 12.9 (torch
# 2.5's environment, whose nvJitLink 12.4 refuses NVVM 12.9's PTX). Names shortened.
NVJITLINK_LOG = """ptxas info    : Compiling entry function '_Z19aggregation_forward' for 'sm_75'
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 60 registers, used 0 barriers, 720 bytes cmem[0]
info    : used 60 registers, used 6 barriers, 0 stack, 0 bytes smem, 720 bytes cmem[0], 0 bytes lmem
"""
PTXAS_LOG = """ptxas info    : 24 bytes gmem, 24 bytes cmem[4]
ptxas info    : Compiling entry function '_Z19aggregation_forward' for 'sm_75'
ptxas info    : Function properties for _Z19aggregation_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 60 registers, 720 bytes cmem[0]
"""


def test_both_assemblers_logs_read_alike():
    from sanmini.ops.ptx import _read_log
    assert _read_log(NVJITLINK_LOG, by_ptxas=False) == (60, 0, 0)
    assert _read_log(PTXAS_LOG, by_ptxas=True) == (60, 0, 0)       # no smem named: none
    spilled = PTXAS_LOG.replace("0 bytes spill stores, 0 bytes spill loads", "8 bytes spill stores, 4 bytes spill loads")
    assert _read_log(spilled.replace("60 registers,", "60 registers, 2048 bytes smem,"), by_ptxas=True) == (60, 12, 2048)
    assert _read_log("error", by_ptxas=True) == (None, None, None)
    assert _read_log(NVJITLINK_LOG.replace("0 bytes smem, ", ""), by_ptxas=False)[2] is None
