"""What the book's interactive figures share: self-contained HTML for the page, live ipywidgets in
a running kernel."""
from __future__ import annotations

import os

STATIC_ENV = "SANMINI_STATIC_HTML"   # set by `make book`: no live widgets in the published page


class PageWidget:
    """Base of the interactive figures: a subclass gives ``to_html()`` (the page, with its own
    JavaScript and no script from elsewhere) and ``widget()`` (live controls)."""

    def _repr_html_(self) -> str:
        return self.to_html()

    def show(self):
        """Display the page's version, and in a live kernel (not the book build, which sets
        ``SANMINI_STATIC_HTML``) the live widgets too."""
        from IPython.display import display

        display(self)
        if not os.environ.get(STATIC_ENV):
            display(self.widget())
