"""sanmini.ops.ptx: kernels compiled to PTX for sm_90 and assembled, with no GPU, from a process
that may run Numba's CUDA simulator (tests/conftest.py turns it on where there is no GPU)."""
import textwrap

import pytest

from sanmini.ops.ptx import KernelBuild, compile_kernel


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
