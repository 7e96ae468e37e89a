"""What the book's interactive figures share: self-contained HTML for the page, live ipywidgets in
a running kernel."""
from __future__ import annotations

import os
import sys
from pathlib import Path

STATIC_ENV = "SANMINI_STATIC_HTML"   # set by `make book`: no live widgets in the published page


def in_kernel() -> bool:
    """True in a running Jupyter (or Colab) kernel, where ``IPython.display`` shows HTML; False in
    plain Python and in the terminal IPython, which would print the object's repr instead."""
    ipython = sys.modules.get("IPython")        # a kernel has imported it; plain Python need not
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class PageWidget:
    """Base of the interactive figures: a subclass gives ``to_html()`` (the page, with its own
    JavaScript and no script from elsewhere) and ``widget()`` (live controls)."""

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path) -> Path:
        """Write the page's version as a standalone HTML file at ``path`` (to open in a browser)
        and return its path."""
        path = Path(path)
        name = type(self).__name__
        path.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                        f'content="width=device-width, initial-scale=1"><title>{name}</title></head>\n'
                        f"<body>\n{self.to_html()}\n</body></html>\n", encoding="utf-8")
        return path

    def show(self):
        """Display the page's version, and in a live kernel (not the book build, which sets
        ``SANMINI_STATIC_HTML``) the live widgets too.

        Only a Jupyter kernel displays them: elsewhere (plain Python, the terminal IPython) this
        prints one line that says so and how to write the page to a file (``.save(path)``) instead,
        and displays nothing."""
        if not in_kernel():
            name = type(self).__name__
            print(f"{name}.show() displays in a Jupyter notebook (or the built book page); no Jupyter "
                  f"kernel runs here: write the page with .save('{name.lower()}.html') and open it "
                  f"in a browser", file=sys.stderr)
            return
        from IPython.display import display

        display(self)
        if not os.environ.get(STATIC_ENV):
            display(self.widget())
