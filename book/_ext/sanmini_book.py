"""Sphinx extension of the SAN book: its style sheet, alt text for glued images, author-year
bibliography labels, and each script once per page.

``static/sanmini.css`` holds the book's layout rules (wide equations, code, outputs and tables
scroll inside their own boxes; headings and signatures wrap on a phone). sphinxcontrib-bibtex makes Sphinx read the sources a second time, and sphinx-thebe and
sphinx-togglebutton add their inline configuration scripts at every read, so without this the page
declares ``const THEBE_JS_URL`` twice and the browser reports an error.

The bibliography's labels are author and year ("Zhao et al., 2020"), as the citations in the text
are (``bibtex_reference_style: author_year``), instead of pybtex's alpha labels ("ZJK20"): the
``authoryear`` style registered here, chosen with ``bibtex_default_style``.
"""
from collections import Counter
from pathlib import Path

from docutils import nodes
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


def _add_static(app):
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app):
    app.connect("builder-inited", _add_static)
    app.add_css_file("sanmini.css")
    app.connect("html-page-context", _unique_scripts, priority=900)   # after the themes
    app.connect("doctree-read", _record_alts)
    app.connect("env-purge-doc", _purge_alts)
    app.connect("env-merge-info", _merge_alts)
    app.connect("doctree-resolved", _fill_alts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
