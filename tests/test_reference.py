"""sanmini.reference, the reference implementation's H200 figures: the one source of them.

bench/RESULTS.md quotes them in its anchor tables, which bench/train_step.py writes from the module;
the tables in the file must say what the module says (a stale table fails here), and the figures
must agree with each other.
"""
import re
import sys
from pathlib import Path

import pytest

from sanmini import reference
from sanmini.models.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
INTRO = "The anchor (`sanmini.reference`)"

# The anchor table's rows and the module's figures they must show.
EXPECTED_ROWS = {
    "reference SAN10 pairwise": (reference.IMAGES_PER_S["san10_pairwise"],
                                 reference.PEAK_GB["san10_pairwise"]),
    "reference SAN10 patchwise": (reference.IMAGES_PER_S["san10_patchwise"],
                                  reference.PEAK_GB["san10_patchwise"]),
    "unfold + torch.compile SAN10 pairwise": (reference.UNFOLD_COMPILE["images_per_s"],
                                              reference.UNFOLD_COMPILE["peak_gb"]),
    "ResNet26": (reference.IMAGES_PER_S["resnet26"], reference.PEAK_GB["resnet26"]),
}


def _table(lines: list[str], header: str) -> list[list[str]]:
    """The cells of the body rows of the first table after ``lines[0]`` whose header row is
    ``header``, Markdown escapes (``\\*``) undone."""
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    rows = []
    for line in lines[start + 2:]:                      # past the header and the |---| row
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("\\*", "*") for cell in line.strip().strip("|").split("|")])
    return rows


def anchors(text: str) -> list[dict]:
    """Every anchor of ``text`` (a RESULTS.md, or the lines the bench writes): its intro sentence,
    its rows (label -> (images/s, peak GB)) and its profile (part -> (ms, share in percent))."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(INTRO):
            continue
        rest = lines[i:]
        rows = {label: (int(rate), float(gb))
                for label, rate, gb in _table(rest, "| implementation | images/s | peak GB |")}
        profile = {part: (float(ms), int(share.rstrip("%")))
                   for part, ms, share in _table(rest, "| part of the step | ms | share of the step |")}
        found.append({"intro": line, "rows": rows, "profile": profile})
    return found


def check_anchor(anchor: dict) -> None:
    setting = reference.SETTING
    for fact in (setting["gpu"], setting["date"], setting["implementation"], f"torch {setting['torch']}",
                 f"batch {reference.BATCH}, {reference.IMAGE_SIZE} x {reference.IMAGE_SIZE}, "
                 f"{setting['dtype']}"):
        assert fact in anchor["intro"]
    assert anchor["rows"] == EXPECTED_ROWS
    expected_ms = {"whole step": float(reference.STEP_MS), **reference.PROFILE_MS}
    assert {part: ms for part, (ms, _) in anchor["profile"].items()} == expected_ms
    for part, (ms, share) in anchor["profile"].items():
        assert share == round(100 * ms / reference.STEP_MS), part


def test_results_md_anchor_is_the_module():
    found = anchors(RESULTS.read_text())
    assert found, f"no anchor ({INTRO} ...) in {RESULTS}"
    for anchor in found:
        check_anchor(anchor)


def test_the_bench_writes_the_anchor_from_the_module():
    pytest.importorskip("numba")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import train_step
    finally:
        sys.path.remove(str(ROOT / "bench"))
    (anchor,) = anchors("\n".join(train_step.anchor_lines()))
    check_anchor(anchor)
    assert train_step.GOALS["san10_pairwise"] == (2 * reference.IMAGES_PER_S["san10_pairwise"],
                                                  reference.PEAK_GB["san10_pairwise"])


def test_the_figures_agree_with_each_other():
    # The profiled step is one step at the measured rate: 64 images at 306 images/s, 209 ms.
    assert round(1e3 * reference.BATCH / reference.IMAGES_PER_S["san10_pairwise"]) == reference.STEP_MS
    assert sum(reference.PROFILE_MS.values()) < reference.STEP_MS
    assert reference.SETTING["batch"] == reference.BATCH
    assert reference.SETTING["image_size"] == reference.IMAGE_SIZE
    # Keyed by the names sanmini.create takes, the same models in both.
    assert set(reference.IMAGES_PER_S) == set(reference.PEAK_GB) <= set(MODELS)


def test_the_chapters_read_the_module():
    """Chapter 8 quotes the reference's figures from the module, not as literals of its own."""
    import json
    chapter = json.loads((ROOT / "book" / "08_where_the_time_goes.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in chapter["cells"] if cell["cell_type"] == "code")
    assert "reference." in code
    for figure in ("306", "752", "3240", "20.5", "12.0", "27.7", "209", "137", "8.8"):
        assert not re.search(rf"(?<![\w.]){re.escape(figure)}(?![\w])", code), figure
