"""The book's notebooks: listed in the table of contents, stored without outputs, and starting with
the cell that installs sanmini in Colab. (make test runs each chapter with nbval too.)"""
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_every_notebook_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for c in toc["chapters"]}
    assert NOTEBOOKS, "the book has no notebooks"
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} cell {i} is stored with outputs: clear them before committing"


sys.path.insert(0, str(ROOT / "book" / "_ext"))
import install_cell  # noqa: E402


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_first_cell_installs_sanmini_in_colab_only(path):
    """The install cell is the one of book/_ext/install_cell.py, with the repository URL of
    _config.yml that the launch buttons use (`make colab-cells` rewrites it)."""
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "code"
    assert first.source == install_cell.install_cell(ROOT), f"run `make colab-cells` ({path.name})"
    assert 'if "google.colab" in sys.modules:' in first.source
    assert "remove-cell" in first.metadata.get("tags", [])


def test_launch_buttons_and_install_cell_use_one_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert url.startswith("https://github.com/") and f"git+{url}'" in install_cell.install_cell(ROOT)
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["html"]["use_repository_button"] is True


def _code_cells(path):
    return [(i, c) for i, c in enumerate(nbformat.read(path, as_version=4).cells) if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_exercise_solutions_are_folded_with_their_outputs(path):
    """A solution cell (its source starts with '# Solution') is tagged hide-cell: the page folds its
    code and its output behind one toggle (hide-input would leave the answer printed below)."""
    for i, cell in _code_cells(path):
        if cell.source.startswith("# Solution"):
            assert "hide-cell" in cell.metadata.get("tags", []), f"{path.name} cell {i}: tag it hide-cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_figures_have_alt_text_and_readable_type(path):
    """A cell that draws with matplotlib gives its image an alt text (cell metadata mystnb.image.alt,
    which myst-nb writes into the page), and asks for no text under 8 points."""
    import re
    for i, cell in _code_cells(path):
        if re.search(r"\bplt\.(subplots|figure|show)\b", cell.source):
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt.split()) >= 5, f"{path.name} cell {i}: give the figure an alt text"
        for size in re.findall(r"(?:fontsize|labelsize)=(\d+(?:\.\d+)?)", cell.source):
            assert float(size) >= 8, f"{path.name} cell {i}: text of {size} points is unreadable in the page"
