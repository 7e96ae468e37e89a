"""Run at the start of every kernel of the book build (``PYTHONSTARTUP``, set by ``make book``): each
PNG that Matplotlib writes carries the height of its smallest text, in the PNG's own pixels.

The site reads it back (``sanmini_book.readable_figures``): a figure is never drawn so small that
its smallest text falls below the book's floor, and the browser tests measure that floor on every
figure at a phone's width. Only the book build loads this file; a reader's Jupyter or Colab does not.

The text measured is what the saved figure shows: visible, non-empty titles, labels, legends,
annotations and the tick labels inside the axes' limits, at the dpi of the save.
"""
from __future__ import annotations

import functools

KEY = "sanmini:smallest-text-px"


def smallest_text_px(figure) -> float | None:
    """The font size, in pixels of the saved image, of the smallest text that ``figure`` draws."""
    from matplotlib.text import Text

    ticks = set()
    shown = []
    for ax in figure.get_axes():
        for axis in filter(None, (getattr(ax, name, None) for name in ("xaxis", "yaxis", "zaxis"))):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((tick.label1, tick.label2))
            # The tick labels drawn: those of the ticks inside the limits of a visible axis of
            # axes that are drawn with their axes (not hidden, not axis("off")).
            if ax.get_visible() and ax.axison and axis.get_visible():
                shown += axis.get_ticklabels(which="both")
    shown += [t for t in figure.findobj(Text) if t not in ticks and (t.axes is None or t.axes.get_visible())]
    sizes = [t.get_fontsize() for t in shown
             if t.get_visible() and t.get_text().strip() and (t.get_alpha() is None or t.get_alpha() > 0)]
    return min(sizes) * figure.dpi / 72 if sizes else None


def install():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    original = FigureCanvasAgg.print_png
    if getattr(original, "_sanmini", False):
        return

    # Matplotlib passes a print method only the keywords its signature names: wraps() keeps it.
    @functools.wraps(original)
    def print_png(self, filename_or_obj, *args, metadata=None, **kwargs):
        size = smallest_text_px(self.figure)                 # "none": the figure draws no text
        metadata = {**(metadata or {}), KEY: "none" if size is None else f"{size:.2f}"}
        return original(self, filename_or_obj, *args, metadata=metadata, **kwargs)

    print_png._sanmini = True
    FigureCanvasAgg.print_png = print_png


install()
