"""The Colab install cell's path, from a wheel of this repository (``make colab-check``).

The first cell of every chapter (install_cell.py) installs ``sanmini[book]`` from the repository when
it runs in Colab. This runs that path as Colab would, on this machine:

1. a wheel of the working tree is built (``python -m build --wheel``, as tests/test_publish.py does);
2. a fresh virtual environment gets only what Colab has before any cell runs that the path relies
   on: pip, the IPython kernel and nbclient (the newest of each);
3. chapter 2 runs in that environment under nbclient, its first cell as written except that the
   repository URL is replaced by the wheel's path, with ``google.colab`` in ``sys.modules`` (a
   stand-in module, from the kernel's startup file) so that the cell's ``%pip install`` runs. The
   cell installs ``sanmini[book]`` and every dependency at the newest version pip finds (torch
   included: a download of several GB), and the chapter's cells then import and check them.

It prints each step's time and the versions the chapter ran on, and exits non-zero when a step
fails. The environment is left in _build/colab-check/venv when a step fails, and removed otherwise.

Usage: python book/_ext/colab_check.py [--python PYTHON] [--chapter book/02_convolution.ipynb]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from install_cell import install_cell, repository_url  # noqa: E402

OUT = ROOT / "_build" / "colab-check"
STARTUP = """\
# As in Colab: google.colab is imported (a stand-in module), so the install cell installs.
import sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
"""
# Appended to the chapter's copy: where sanmini and its stack came from.
REPORT = """\
import importlib.metadata as m, json, sys
import sanmini
print("COLAB-CHECK " + json.dumps({"python": sys.version.split()[0], "imported from": sanmini.__file__,
      **{p: m.version(p) for p in ("sanmini", "torch", "torchvision", "numpy",
      "numba", "matplotlib", "ipywidgets", "scikit-image")}}))
"""
RUN = """\
import sys, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
try:
    NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name="python3",
                   resources={"metadata": {"path": sys.argv[3]}}).execute()
finally:
    nbformat.write(nb, path)
"""


def step(title: str, command: list[str], shown: str | None = None, **kwargs) -> None:
    print(f"== {title}: {shown or ' '.join(map(str, command))}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, **kwargs)
    print(f"   {time.monotonic() - started:.0f} s", flush=True)
    if done.returncode != 0:
        sys.exit(f"colab-check: {title} failed (exit status {done.returncode}); the environment is in {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3", help="the Python of the fresh environment (Colab's: 3.12)")
    parser.add_argument("--chapter", type=Path, default=ROOT / "book" / "02_convolution.ipynb")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take (the install cell's download)")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "run").mkdir(parents=True)
    total = time.monotonic()

    step("build the wheel", [sys.executable, "-m", "build", "--wheel", "--outdir", str(OUT / "dist"), str(ROOT)],
         stdout=subprocess.DEVNULL)
    wheel = next((OUT / "dist").glob("sanmini-*.whl"))

    venv = OUT / "venv"
    python = venv / "bin" / "python"
    step("create a fresh virtual environment", [args.python, "-m", "venv", str(venv)])
    step("install the kernel and nbclient", [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip",
                                             "ipykernel", "nbclient"])

    nb = nbformat.read(args.chapter, as_version=4)
    first = nb.cells[0]
    if first.source != install_cell(ROOT):
        sys.exit(f"colab-check: the first cell of {args.chapter.name} is not the install cell "
                 f"(run `make colab-cells`)")
    remote = f"git+{repository_url(ROOT)}"
    first.source = first.source.replace(remote, wheel.as_uri())
    assert wheel.as_uri() in first.source
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    copy = OUT / "run" / args.chapter.name
    nbformat.write(nb, copy)
    (OUT / "startup.py").write_text(STARTUP)
    print(f"   the install cell now reads: ...{first.source.splitlines()[-1].strip()}")

    # The kernel: the environment's own (no kernel spec of this machine's user), one thread per
    # process as the Makefile sets them, caches of its own.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SANMINI_STATIC_HTML", "NUMBA_ENABLE_CUDASIM")}
    env.update(PYTHONSTARTUP=str(OUT / "startup.py"), JUPYTER_DATA_DIR=str(OUT / "jupyter"),
               JUPYTER_CONFIG_DIR=str(OUT / "jupyter-config"), NUMBA_CACHE_DIR=str(OUT / "numba-cache"),
               SANMINI_CACHE=str(OUT / "sanmini-cache"))
    try:
        step(f"run {args.chapter.name}, its first cell installing the wheel",
             [str(python), "-c", RUN, str(copy), str(args.timeout), str(OUT / "run")],
             shown=f"nbclient in {venv}, on {copy}", env=env, cwd=OUT / "run")
    finally:
        executed = nbformat.read(copy, as_version=4)
        said = "".join(o.get("text", "") for o in executed.cells[0].get("outputs", []))
        print("   the install cell printed:", said.strip()[-3000:] or "nothing")

    lines = [line for output in executed.cells[-1].get("outputs", []) for line in output.get("text", "").splitlines()
             if line.startswith("COLAB-CHECK ")]
    if not lines:
        sys.exit(f"colab-check: the chapter's copy ({copy}) did not report what it ran on")
    report = json.loads(lines[-1][len("COLAB-CHECK "):])
    imported = Path(report.pop("imported from")).resolve()
    if venv.resolve() not in imported.parents:
        sys.exit(f"colab-check: the chapter imported sanmini from {imported}, not from the fresh environment")
    if report["sanmini"] != wheel.name.split("-")[1]:
        sys.exit(f"colab-check: the chapter ran on sanmini {report['sanmini']}, not on the wheel {wheel.name}")
    print(f"== the chapter ran on the wheel {wheel.name}: {json.dumps(report)}")
    print(f"   colab-check passed in {time.monotonic() - total:.0f} s")
    shutil.rmtree(venv)


if __name__ == "__main__":
    main()
