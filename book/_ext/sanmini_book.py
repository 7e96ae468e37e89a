"""Sphinx extension of the SAN book: each script once per page.

sphinxcontrib-bibtex makes Sphinx read the sources a second time, and sphinx-thebe and
sphinx-togglebutton add their inline configuration scripts at every read, so without this the page
declares ``const THEBE_JS_URL`` twice and the browser reports an error.
"""


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


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)   # after the themes
    return {"parallel_read_safe": True, "parallel_write_safe": True}
