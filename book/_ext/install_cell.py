"""The first cell of every chapter: in Colab it installs sanmini from the repository named in
_config.yml (``repository.url``), the URL the launch buttons use too; elsewhere it does nothing.

``python book/_ext/install_cell.py`` (``make colab-cells``) writes the cell into every notebook of
the book; tests/test_book.py checks that every notebook has it as written here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = """\
# In Colab, install sanmini from the repository; locally, `make book` and `make test` have set it up.
# On a GPU runtime the cuda12 extra brings numba-cuda with nvJitLink, which assembles the kernels
# itself, so a driver older than numba-cuda's CUDA toolkit still runs them.
import shutil
import sys

if "google.colab" in sys.modules:
    extras = "book,cuda12" if shutil.which("nvidia-smi") else "book"
    get_ipython().run_line_magic("pip", f"install -q 'sanmini[{{extras}}] @ git+{url}'")"""


def repository_url(root: Path = ROOT) -> str:
    return yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]


def install_cell(root: Path = ROOT) -> str:
    return TEMPLATE.format(url=repository_url(root))


def write(root: Path = ROOT) -> None:
    source = install_cell(root)
    for path in sorted((root / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if first is None or first.cell_type != "code" or "google.colab" not in first.source:
            first = nbformat.v4.new_code_cell(id="colab-install")
            nb.cells.insert(0, first)
        first.source = source
        first.metadata["tags"] = ["remove-cell"]
        nbformat.write(nb, path)
        print("install cell written:", path.relative_to(root))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
