"""PTX and register counts of CUDA kernels, compiled for a chosen GPU without needing one.

``compile_kernel("aggregation_forward")`` compiles a kernel of :mod:`.cuda` (or the source of a
kernel written elsewhere, with its signature) to PTX for compute capability ``cc`` with
``numba.cuda.compile_ptx``, then assembles that PTX for the same target with nvJitLink (through
``cuda.core``'s ``Linker``), whose log reports the registers and spills of each kernel as ptxas
sees them. Neither step needs a GPU or a driver.

The work runs in a fresh Python process with ``NUMBA_ENABLE_CUDASIM=0``: under Numba's CUDA
simulator ``numba.cuda`` is the simulator and cannot compile, and the simulator can only be chosen
before numba is first imported. In that process, ``numba.cuda.dispatcher.get_current_device`` is
replaced by a stand-in device of compute capability ``cc``, because device functions (the
per-element math of :mod:`.elementwise`) are compiled for the current device; the caller's process
is left untouched.
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
from dataclasses import dataclass
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

    def opcodes(self) -> Counter:
        """How many times each PTX instruction (e.g. ``ld.global.f32``) occurs in the body."""
        body = self.ptx[self.ptx.find("{"):]
        return Counter(m.group(1) for m in _OPCODE.finditer(body)
                       if not m.group(1).startswith(("reg", "local", "shared", "param")))

    def count(self, prefix: str) -> int:
        """Instructions whose name starts with ``prefix``: ``count("ld.global")`` counts every
        load from global memory, whatever its type."""
        return sum(n for op, n in self.opcodes().items() if op == prefix or op.startswith(prefix + "."))


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
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "sanmini.ops.ptx"], input=json.dumps(request),
                          env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {request.get('kernel') or request['function']} for "
                           f"sm_{cc[0]}{cc[1]} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return KernelBuild(result["name"], tuple(cc), result["ptx"], result["registers"],
                       result["spill_bytes"], result["log"])


def _assemble(ptx: str, cc) -> tuple[int | None, int | None, str]:
    """Registers and spill bytes per thread of the (single) kernel in ``ptx``, from nvJitLink."""
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
    except Exception as err:  # no nvJitLink and no driver: the PTX is still there
        return None, None, f"not assembled: {type(err).__name__}: {err}"
    registers = re.search(r"[Uu]sed (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return (int(registers.group(1)) if registers else None,
            int(spills.group(1)) + int(spills.group(2)) if spills else None, log)


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
    registers, spill_bytes, log = _assemble(ptx, cc)
    return {"name": function.__name__, "ptx": ptx, "registers": registers,
            "spill_bytes": spill_bytes, "log": log}


if __name__ == "__main__":
    print(json.dumps(_compile_here(json.loads(sys.stdin.read()))))
