"""PTX and register counts of CUDA kernels, compiled for a chosen GPU without needing one.

``compile_kernel("aggregation_forward")`` compiles a kernel of :mod:`.cuda` (or the source of a
kernel written elsewhere, with its signature) to PTX for compute capability ``cc`` with
``numba.cuda.compile_ptx``, then assembles that PTX for the same target with nvJitLink (through
``cuda.core``'s ``Linker``), whose log reports the registers and spills of each kernel as ptxas
sees them. Neither step needs a GPU or a driver. Where nvJitLink cannot assemble it (an older
cuda-core links through the driver; an nvJitLink older than the NVVM that wrote the PTX refuses
its version, as torch 2.5's pinned nvJitLink 12.4 refuses NVVM 12.9's PTX 8.8), the PTX goes to
the ``ptxas`` that ships beside that NVVM in the CUDA compiler wheel (``nvidia-cuda-nvcc-cu12``,
which numba-cuda's cu12 extra installs): the same release, so it reads every PTX that NVVM
writes.

The work runs in a fresh Python process with ``NUMBA_ENABLE_CUDASIM=0``: under Numba's CUDA
simulator ``numba.cuda`` is the simulator and cannot compile, and the simulator can only be chosen
before numba is first imported. In that process, ``numba.cuda.dispatcher.get_current_device`` is
replaced by a stand-in device of compute capability ``cc``, because device functions (the
per-element math of :mod:`.elementwise`) are compiled for the current device; the caller's process
is left untouched.

:data:`TARGETS` are the GPUs students rent (a T4 on Colab's free tier, A100s, A10s and L4s on
course clusters, H100s): :func:`compile_library` compiles every kernel of the library for one of
them in one process, and :func:`limits_exceeded` says what a build asks of a block beyond that
target's default limits (registers, spills, shared memory).
"""
from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds sanmini/
_OPCODE = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)\b", re.MULTILINE)


@dataclass(frozen=True)
class KernelBuild:
    """A kernel compiled to PTX for one target, with what the assembler reports about it."""

    name: str
    cc: tuple[int, int]
    ptx: str
    registers: int | None        # per thread, from the assembler; None if it could not run
    spill_bytes: int | None      # spill stores + spill loads, bytes per thread
    assembler_log: str           # the assembler's log, or why it did not run
    shared_bytes: int | None = None   # static shared memory per block, from the assembler

    def opcodes(self) -> Counter:
        """How many times each PTX instruction (e.g. ``ld.global.f32``) occurs in the body."""
        body = self.ptx[self.ptx.find("{"):]
        return Counter(m.group(1) for m in _OPCODE.finditer(body)
                       if not m.group(1).startswith(("reg", "local", "shared", "param")))

    def count(self, prefix: str) -> int:
        """Instructions whose name starts with ``prefix``: ``count("ld.global")`` counts every
        load from global memory, whatever its type."""
        return sum(n for op, n in self.opcodes().items() if op == prefix or op.startswith(prefix + "."))


# Compute capability -> the GPUs of it that students rent. Every one of them allows a block, by
# default (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability"): 64 K
# 32-bit registers, at most 255 per thread, and 48 KB of shared memory, static and dynamic
# together, without opting in to more with cudaFuncSetAttribute (which sanmini does not do).
TARGETS = {(7, 5): "T4, RTX 20xx", (8, 0): "A100", (8, 6): "A10, A40, RTX 30xx",
           (8, 9): "L4, RTX 40xx", (9, 0): "H100, H200"}
REGISTERS_PER_BLOCK = 64 * 1024
REGISTERS_PER_THREAD = 255
DEFAULT_SHARED_BYTES_PER_BLOCK = 48 * 1024


def library_kernels() -> dict[str, tuple[int, int]]:
    """Every CUDA kernel of the library by name: (threads per block, the most dynamic shared
    memory in bytes a launch gives it), as :mod:`.cuda` and :mod:`.fused` launch them."""
    from . import cuda as kernels, fused_cuda
    launches = {name: (kernels.THREADS_PER_BLOCK, 0) for name in kernels.KERNEL_ARRAY_NDIMS}
    launches.update({name: (fused_cuda.THREADS, fused_cuda.SHARED_BYTES) for name in fused_cuda.KERNELS})
    return launches


def limits_exceeded(build: KernelBuild, threads: int, dynamic_shared_bytes: int = 0) -> list[str]:
    """What ``build``, launched with ``threads`` per block and up to ``dynamic_shared_bytes`` of
    dynamic shared memory, asks beyond its target's default limits; [] when it fits. A build the
    assembler did not report on is refused (nothing checked is not a pass)."""
    target = f"sm_{build.cc[0]}{build.cc[1]}"
    if build.registers is None or build.spill_bytes is None:
        return [f"{build.name} for {target}: not assembled ({build.assembler_log[:200]})"]
    problems = []
    if build.registers > REGISTERS_PER_THREAD:
        problems.append(f"{build.registers} registers per thread, more than {REGISTERS_PER_THREAD}")
    if build.registers * threads > REGISTERS_PER_BLOCK:
        problems.append(f"{build.registers} registers x {threads} threads = "
                        f"{build.registers * threads} per block, more than {REGISTERS_PER_BLOCK}")
    if build.spill_bytes:
        problems.append(f"{build.spill_bytes} bytes of spills per thread")
    shared = (build.shared_bytes or 0) + dynamic_shared_bytes
    if shared > DEFAULT_SHARED_BYTES_PER_BLOCK:
        problems.append(f"{build.shared_bytes or 0} + {dynamic_shared_bytes} bytes of shared memory per "
                        f"block, more than the default {DEFAULT_SHARED_BYTES_PER_BLOCK}")
    return [f"{build.name} for {target}: {problem}" for problem in problems]


def compile_library(cc: tuple[int, int], dtype: str = "float32", timeout: float = 900) -> list[KernelBuild]:
    """Every kernel of :func:`library_kernels`, compiled to PTX for ``cc`` and assembled, in one
    fresh process (one import of Numba for all of them)."""
    if tuple(cc) not in TARGETS:
        raise ValueError(f"cc must be one of {sorted(TARGETS)}, got {cc!r}")
    names = list(library_kernels())
    builds = _run([{"kernel": name, "dtype": dtype, "cc": list(cc)} for name in names], timeout)
    return [replace(build, name=name) for build, name in zip(builds, names)]   # fused_* by name


def compile_kernel(kernel, signature: str | None = None, *, dtype: str = "float32",
                   cc: tuple[int, int] = (9, 0), timeout: float = 300) -> KernelBuild:
    """Compile a CUDA kernel to PTX for compute capability ``cc`` and assemble it, with no GPU.

    Args:
        kernel: the name of a kernel of :mod:`sanmini.ops.cuda` (e.g. ``"aggregation_forward"``),
            whose signature is then ``sanmini.ops.cuda.kernel_signature(kernel, dtype)``, or of
            :mod:`sanmini.ops.fused_cuda` (``"fused_forward"``, ``"fused_backward"``); or a
            kernel written elsewhere (a ``@cuda.jit`` kernel or its Python function), whose source
            is compiled. That source may use ``cuda``, ``numba`` and ``math`` and nothing else
            defined outside it.
        signature: for a kernel given as a function, its argument types as a string of Numba
            types, e.g. ``"(float32[:, ::1], float32[:, ::1], int64)"``.
        dtype: ``"float32"`` or ``"float64"``, the data type of a named kernel's arrays.
        cc: the target compute capability, e.g. ``(9, 0)`` for an H100 or H200.
    """
    if isinstance(kernel, str):
        request = {"kernel": kernel, "dtype": dtype}
    else:
        if signature is None:
            raise ValueError("a kernel given as a function needs its signature, e.g. "
                             "'(float32[:, ::1], float32[:, ::1], int64)'")
        function = getattr(kernel, "py_func", kernel)
        lines = textwrap.dedent(inspect.getsource(function)).splitlines()
        while lines and lines[0].lstrip().startswith("@"):   # drop the @cuda.jit decorator
            lines.pop(0)
        request = {"source": "\n".join(lines), "function": function.__name__,
                   "signature": signature}
    request["cc"] = list(cc)
    return _run([request], timeout)[0]


def _run(requests: list[dict], timeout: float) -> list[KernelBuild]:
    """The requests compiled in one fresh process (see the module's docstring)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "sanmini.ops.ptx"], input=json.dumps(requests),
                          env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        names = ", ".join(r.get("kernel") or r["function"] for r in requests)
        cc = requests[0]["cc"]
        raise RuntimeError(f"compiling {names} for sm_{cc[0]}{cc[1]} failed:\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [KernelBuild(r["name"], tuple(q["cc"]), r["ptx"], r["registers"], r["spill_bytes"], r["log"],
                        r["shared_bytes"]) for q, r in zip(requests, results)]


def _assemble(ptx: str, cc) -> tuple[int | None, int | None, str, int | None]:
    """Registers and spill bytes per thread of the (single) kernel in ``ptx``, the assembler's log,
    and its static shared memory per block: from nvJitLink, else from the ``ptxas`` beside NVVM
    (see the module's docstring); Nones and both errors where neither can assemble it."""
    try:
        try:
            from cuda.core import Linker, LinkerOptions, ObjectCode
        except ImportError:
            from cuda.core.experimental import Linker, LinkerOptions, ObjectCode
        linker = Linker(ObjectCode.from_ptx(ptx.encode()),
                        options=LinkerOptions(arch=f"sm_{cc[0]}{cc[1]}", verbose=True))
        linker.link("cubin")
        log = linker.get_info_log() or ""
        linker.close()
        by_ptxas = False
    except Exception as err:  # no usable nvJitLink and no driver: try the ptxas of NVVM's release
        refused = f"nvJitLink: {type(err).__name__}: {err}"
        log, by_ptxas = _ptxas_log(ptx, cc), True
        if log is None or log.startswith("not assembled"):
            return None, None, f"not assembled: {refused}; {log or 'no ptxas beside NVVM'}", None
    registers, spill_bytes, shared_bytes = _read_log(log, by_ptxas)
    return registers, spill_bytes, log, shared_bytes


def _read_log(log: str, by_ptxas: bool) -> tuple[int | None, int | None, int | None]:
    """(registers, spill bytes, static shared bytes) per thread / block from an assembler's log:
    nvJitLink's always names "N bytes smem"; ``ptxas -v`` names shared memory only when the kernel
    has some (0 then)."""
    registers = re.search(r"[Uu]sed (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    shared = re.search(r"(\d+) bytes smem", log)
    return (int(registers.group(1)) if registers else None,
            int(spills.group(1)) + int(spills.group(2)) if spills else None,
            int(shared.group(1)) if shared else (0 if by_ptxas and registers else None))


def ptxas_path() -> str | None:
    """The ``ptxas`` of the CUDA compiler wheel that holds numba-cuda's NVVM
    (``nvidia/cuda_nvcc/bin/ptxas``, from ``nvidia-cuda-nvcc-cu12``), else None. (One on the
    ``PATH`` may be of another release than NVVM, so it is not used.)"""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvcc")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "bin" / "ptxas"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _ptxas_log(ptx: str, cc) -> str | None:
    """``ptxas -v``'s report on ``ptx`` for ``sm_<cc>`` (None without a ptxas beside NVVM; a line
    starting "not assembled" if it refuses)."""
    import tempfile

    ptxas = ptxas_path()
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sanmini-ptxas-") as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([ptxas, "-v", f"-arch=sm_{cc[0]}{cc[1]}", "-o", str(Path(folder) / "kernel.cubin"),
                               str(source)], capture_output=True, text=True)
    log = done.stdout + done.stderr
    return log if done.returncode == 0 else f"not assembled by {ptxas}: {log[-500:]}"


def _compile_here(request: dict) -> dict:
    """The work of :func:`compile_kernel`, in the fresh process."""
    import types

    import numba
    import numba.cuda.dispatcher
    from numba import cuda

    cc = tuple(request["cc"])
    stand_in = types.SimpleNamespace(compute_capability=cc)
    numba.cuda.dispatcher.get_current_device = lambda: stand_in
    if "kernel" in request:
        from sanmini.ops import cuda as kernels, fused_cuda
        name, dtype = request["kernel"], getattr(numba, request["dtype"])
        if name in fused_cuda.KERNELS:
            function = getattr(fused_cuda.kernels(dtype), name.removeprefix("fused_")).py_func
            signature = fused_cuda.kernel_signature(name, dtype)
        elif name in kernels.KERNEL_ARRAY_NDIMS:
            function = getattr(kernels, name).py_func
            signature = kernels.kernel_signature(name, dtype)
        else:
            raise SystemExit(f"no kernel {name!r} in sanmini.ops.cuda or sanmini.ops.fused_cuda; "
                             f"there are {sorted(kernels.KERNEL_ARRAY_NDIMS) + list(fused_cuda.KERNELS)}")
    else:
        import math
        namespace = {"cuda": cuda, "numba": numba, "math": math}
        exec(compile(request["source"], "<kernel source>", "exec"), namespace)
        function, signature = namespace[request["function"]], request["signature"]
    ptx, _ = cuda.compile_ptx(function, signature, cc=cc)
    registers, spill_bytes, log, shared_bytes = _assemble(ptx, cc)
    return {"name": function.__name__, "ptx": ptx, "registers": registers,
            "spill_bytes": spill_bytes, "log": log, "shared_bytes": shared_bytes}


if __name__ == "__main__":
    print(json.dumps([_compile_here(request) for request in json.loads(sys.stdin.read())]))
