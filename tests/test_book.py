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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_folded_cells_are_solutions(path):
    """The page labels every folded cell "Show the solution" (_config.yml, nb_code_prompt_show):
    so a folded cell must be an exercise's solution."""
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]["nb_code_prompt_show"] == "Show the solution"
    for i, cell in _code_cells(path):
        if "hide-cell" in cell.metadata.get("tags", []):
            assert cell.source.startswith("# Solution"), f"{path.name} cell {i} is folded but is not a solution"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_cites_equations_by_number_not_label(path):
    """A reader cannot look up "Eq. (eq-pairwise)": a code comment cites the equation's number or
    its name, as the text shows them."""
    import re
    for i, cell in _code_cells(path):
        label = re.search(r"\beq-[a-z][\w-]*", cell.source)
        assert not label, f"{path.name} cell {i} cites the label {label[0]!r}: cite the equation's number or name"


# Words that state a direction of speed, and uses of them that are not about a time measured on the
# machine that builds the page (learning per epoch, the order of an index, a question, the statistic
# a timing reports).
_SPEED = r"\b(faster|slower|quicker|speed-?ups?|times as fast|fastest|slowest)\b"
_NOT_A_TIMING = [r"\blearn\w*\s+(much\s+)?faster", r"\blearning\s+(much\s+)?faster", r"\$c\$ fastest",
                 r"\bfastest in the index", r"\bWhich is faster\b", r"\bcan move faster\b",
                 r"\bfastest of (two|three|five|\d+)\b"]
# Where the figures a sentence reads come from: the recorded benchmarks (with machine and date) or
# the reference's recorded run.
_CITES_RECORD = r"RESULTS\.md|\brecorded\b"


def _sentences(markdown: str):
    import re
    text = re.sub(r"```.*?```|\$\$.*?\$\$", " ", markdown, flags=re.S)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*`({])", text) if s.strip()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_prose_about_speed_reads_recorded_figures(path):
    """Pages are built on busy machines, so no sentence may state a direction of speed that the
    page's own live timings could contradict: a sentence that says something was faster or slower
    cites the recorded figures it reads (bench/RESULTS.md, or the reference's recorded run); a
    direction of this machine's live timings is printed by the cell that measures them."""
    import re
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "markdown":
            continue
        for sentence in _sentences(cell.source):
            if not re.search(_SPEED, sentence, re.I):
                continue
            if any(re.search(p, sentence) for p in _NOT_A_TIMING):
                continue
            assert re.search(_CITES_RECORD, sentence), \
                f"{path.name} cell {i}: a direction of speed with no recorded source: {sentence[:160]!r}"
