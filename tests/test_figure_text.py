"""book/_ext/figure_text.py, which the book build runs in every kernel: each Matplotlib PNG records
the height of its smallest drawn text, in the PNG's pixels (points x dpi / 72), which the site and
the browser tests read back."""
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import figure_text  # noqa: E402  (installs itself on import, as in the build)


def _recorded(fig, **savefig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    plt.close(fig)
    text = Image.open(buffer).text.get(figure_text.KEY)
    return None if text is None else float(text)


@pytest.mark.parametrize("dpi", [50, 100, 144])
def test_smallest_text_is_recorded_in_pixels_of_the_png(dpi):
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    a.plot([0, 1]); a.set_title("title", fontsize=14)
    b.tick_params(labelsize=7); b.legend(["x"], fontsize=9) if b.plot([1, 0]) else None
    assert _recorded(fig, dpi=dpi, bbox_inches="tight") == pytest.approx(7 * dpi / 72, abs=0.01)


def test_hidden_and_empty_text_does_not_count():
    fig, (a, b) = plt.subplots(1, 2)
    a.text(0.5, 0.5, "tiny", fontsize=4, visible=False)
    a.set_xlabel("   ", fontsize=3)
    b.text(0.5, 0.5, "tiny", fontsize=5)
    b.set_visible(False)
    a.tick_params(labelsize=11)
    assert _recorded(fig, dpi=72) == pytest.approx(11, abs=0.01)


def test_a_figure_without_text_says_so():
    fig, ax = plt.subplots()
    ax.imshow([[0, 1], [1, 0]])
    ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    assert Image.open(buffer).text[figure_text.KEY] == "none"
