"""Sphinx extension of the SAN book: its style sheet and script, alt text for glued images,
author-year bibliography labels, figures that stay readable on a phone, and each script once per
page.

``static/sanmini.css`` holds the book's layout rules (wide equations, code, outputs and tables
scroll inside their own boxes and show that they do; tables become one card per row on a phone;
headings and signatures wrap on a phone). ``static/sanmini.js`` wires the themes' sidebar buttons
that a reader sees, marks the boxes that scroll and stacks the wide tables. sphinxcontrib-bibtex makes Sphinx read the sources a second time, and sphinx-thebe and
sphinx-togglebutton add their inline configuration scripts at every read, so without this the page
declares ``const THEBE_JS_URL`` twice and the browser reports an error.

The bibliography's labels are author and year ("Zhao et al., 2020"), as the citations in the text
are (``bibtex_reference_style: author_year``), instead of pybtex's alpha labels ("ZJK20"): the
``authoryear`` style registered here, chosen with ``bibtex_default_style``.
"""
import base64
import html
import io
import math
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

from docutils import nodes
from PIL import Image
from sphinx.util import logging

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabels(BaseLabelStyle):
    """"Zhao et al., 2020" (three or more authors), "Zhao and Jia, 2020", "Zhao, 2020"; labels that
    would repeat get a, b, ... after the year."""

    def format_labels(self, sorted_entries):
        labels = [self._label(entry) for entry in sorted_entries]
        repeated, seen = Counter(labels), Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label

    @staticmethod
    def _label(entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [" ".join(person.last_names) for person in people]
        who = (names[0] + " et al." if len(names) > 2 else " and ".join(names)) or entry.key
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels


register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # An inline script's filename is '' after one read and None after the other.
        key = (getattr(script, "filename", str(script)) or "",
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# --- alt text ----------------------------------------------------------------------------------
# myst-nb names an output image after its content and gives it the alt text of its cell's metadata
# (mystnb.image.alt). An image glued into another page ({glue} with :doc:) is the same file without
# that text; it takes the alt text the image has where it was made. An image with none anywhere is
# reported, so that `make book` (-W) fails on it.

def _record_alts(app, doctree):
    alts = {Path(node["uri"]).name: node["alt"] for node in doctree.findall(nodes.image) if node.get("alt")}
    _alts(app.env)[app.env.docname] = alts


def _alts(env) -> dict:
    if not hasattr(env, "sanmini_alts"):
        env.sanmini_alts = {}
    return env.sanmini_alts


def _purge_alts(app, env, docname):
    _alts(env).pop(docname, None)


def _merge_alts(app, env, docnames, other):
    _alts(env).update({d: a for d, a in _alts(other).items() if d in docnames})


def _fill_alts(app, doctree, docname):
    known = {name: alt for alts in _alts(app.env).values() for name, alt in alts.items()}
    for node in doctree.findall(nodes.image):
        if not node.get("alt"):
            alt = known.get(Path(node["uri"]).name)
            if alt:
                node["alt"] = alt
            else:
                logging.getLogger(__name__).warning(
                    f"image {node['uri']} has no alt text: give its cell mystnb.image.alt", location=node)


# --- figures that can be read on a phone ---------------------------------------------------------
# book/_ext/figure_text.py, run in every kernel of the build, records in each Matplotlib PNG the
# height of its smallest text (in the PNG's pixels). After the build each <img> of such a figure gets
# that height (data-text-px) and the width at which the text reaches FLOOR_PX CSS pixels
# (--sx-readable-width): the style sheet never lets the figure shrink below it, and where the column
# is narrower the figure scrolls sideways in its box. The browser tests measure the same floor.

FLOOR_PX = 9
TEXT_KEY = "sanmini:smallest-text-px"
_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'\ssrc="([^"]+)"')
_STYLE = re.compile(r'\sstyle="([^"]*)"')


def _figure_text(source):
    """(smallest text px, width px) of a PNG given as a path or bytes, or None without the record."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            size = image.text.get(TEXT_KEY) if hasattr(image, "text") else None
            if size == "none":                               # a figure that draws no text
                return (None, image.size[0])
            return (float(size), image.size[0]) if size else None
    except (OSError, ValueError):
        return None


def _readable(tag: str, page: Path) -> str:
    if "data-text-px" in tag or not (src := _SRC.search(tag)):
        return tag
    ref = html.unescape(src.group(1))
    if ref.startswith("data:image/png;base64,"):
        found = _figure_text(base64.b64decode(ref.split(",", 1)[1]))
    elif not urlsplit(ref).scheme and ref.lower().endswith(".png"):
        found = _figure_text(page.parent / unquote(urlsplit(ref).path))
    else:
        return tag
    if found is None:
        return tag
    text_px, width = found
    if text_px is None:
        return tag[:4] + ' data-text-px="none"' + tag[4:]
    rule = f"--sx-readable-width: {math.ceil(width * FLOOR_PX / text_px)}px;"
    if _STYLE.search(tag):                                # one style attribute: the browser reads the first
        tag = _STYLE.sub(lambda m: f' style="{rule} {m.group(1)}"', tag, count=1)
    else:
        tag = tag[:4] + f' style="{rule}"' + tag[4:]
    return tag[:4] + f' data-text-px="{text_px:g}"' + tag[4:]


def _readable_figures(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        marked = _IMG.sub(lambda m: _readable(m.group(0), page), text)
        if marked != text:
            page.write_text(marked, encoding="utf-8")


def _add_static(app):
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app):
    app.connect("builder-inited", _add_static)
    app.add_css_file("sanmini.css")
    app.add_js_file("sanmini.js", loading_method="defer")
    app.connect("build-finished", _readable_figures)
    app.connect("html-page-context", _unique_scripts, priority=900)   # after the themes
    app.connect("doctree-read", _record_alts)
    app.connect("env-purge-doc", _purge_alts)
    app.connect("env-merge-info", _merge_alts)
    app.connect("doctree-resolved", _fill_alts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
