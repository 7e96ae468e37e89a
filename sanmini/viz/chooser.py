"""A figure chooser: several matplotlib figures behind one menu, the reader picks which one to see.

:class:`FigureChooser` holds named figures (e.g. one per ablation axis). It shows them two ways,
as :class:`~sanmini.viz.AttentionExplorer` does:

* as self-contained HTML: every figure embedded as a PNG with its alt text, a ``<select>`` and a
  few lines of the page's own JavaScript that show the chosen one (no kernel, no script from
  elsewhere), so it works in the published book;
* as a live ipywidgets dropdown (:meth:`FigureChooser.widget`) in a running kernel.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io

from .page import PageWidget


class FigureChooser(PageWidget):
    """Named figures, one shown at a time.

    Args:
        figures: name -> ``matplotlib.figure.Figure``; the first is shown first.
        alts: name -> the alt text of that figure's image (at least five words each: what it shows).
        label: the menu's label.
        caption: text under the figure.
    """

    def __init__(self, figures: dict, alts: dict, label: str = "show", caption: str = ""):
        if not figures:
            raise ValueError("figures must name at least one figure")
        missing = [name for name in figures if len(str(alts.get(name, "")).split()) < 5]
        if missing:
            raise ValueError(f"alts must give every figure an alt text of at least five words; "
                             f"missing or too short for {missing}")
        self.names, self.label, self.caption = list(figures), label, caption
        self.alts = {name: str(alts[name]) for name in figures}
        self.png = {name: self._png(fig) for name, fig in figures.items()}

    @staticmethod
    def _png(fig) -> bytes:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()

    def to_html(self) -> str:
        uid = "fc-" + hashlib.sha1(b"".join(self.png.values())).hexdigest()[:10]
        options = "".join(f'<option value="{i}">{html.escape(name)}</option>' for i, name in enumerate(self.names))
        images = "".join(
            f'<img class="fc-figure" data-index="{i}" alt="{html.escape(self.alts[name])}" '
            f'style="max-width:100%;height:auto;{"" if i == 0 else "display:none;"}" '
            f'src="data:image/png;base64,{base64.b64encode(self.png[name]).decode("ascii")}">'
            for i, name in enumerate(self.names))
        caption = f'<p class="fc-caption" style="font-size:12px;color:#555">{html.escape(self.caption)}</p>' \
            if self.caption else ""
        script = ("var s=root.querySelector('select');s.addEventListener('change',function(){"
                  "root.querySelectorAll('.fc-figure').forEach(function(im){"
                  "im.style.display=im.getAttribute('data-index')===s.value?'':'none';});});")
        return (f'<div class="sanmini-chooser" id="{uid}" style="margin:0.5em 0 1em 0">'
                f'<label style="font-size:13px">{html.escape(self.label)} <select>{options}</select></label>'
                f'<div>{images}</div>{caption}'
                f'<script>(function(){{var root=document.getElementById("{uid}");{script}}})();</script></div>')


    def widget(self):
        """A live dropdown and the chosen figure."""
        import ipywidgets as widgets

        choose = widgets.Dropdown(options=self.names, description=self.label)
        image = widgets.Image(value=self.png[self.names[0]], format="png")

        def draw(*_):
            image.value = self.png[choose.value]
        choose.observe(draw, names="value")
        return widgets.VBox([choose, image])

