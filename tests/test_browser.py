"""The built book (_build/html, made by `make book`) in a real browser: headless Chromium, driven by
Playwright, over a server on 127.0.0.1.

Every page loads with no JavaScript error and no failed request; no internal link, image or anchor
is broken; equations are typeset by MathJax and citations resolve; every attention explorer
renders and reacts to the mouse with no kernel behind it. A screenshot of each chapter's first
explorer is written to _build/screenshots/ for review.

Needs Debian's Chromium (`apt-get install chromium chromium-driver`, as root; .ci/run does this);
without it these tests are skipped with that message.
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOW = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver, as root), as .ci/run does"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no headless Chromium at {CHROMIUM}: {HOW}", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is part of requirements.lock: run make setup")
if not (SITE / "index.html").exists():
    pytest.skip("the book is not built: run `make book` (make test does it first)", allow_module_level=True)

PAGES = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
               if not p.relative_to(SITE).as_posix().startswith(("_sources", "_static")))
CHAPTERS = [p for p in PAGES if re.match(r"book/\d\d_", p)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        # The flags keep Chromium from reaching out to the network, which this machine does not have.
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _open(browser, url):
    """Open a page; return it with the errors it reported: console errors, page errors,
    failed requests and HTTP error responses."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)
    return page, problems


def test_site_root_serves_a_favicon(site):
    """Browsers ask for /favicon.ico on any page that names no icon (the root index.html, which
    redirects to the introduction, is one); a 404 there shows up in the console."""
    import urllib.request
    with urllib.request.urlopen(site + "favicon.ico") as r:
        assert r.status == 200 and r.read(4) == b"\x00\x00\x01\x00"   # the ICO header


def test_the_book_has_its_chapters():
    assert "index.html" in PAGES and "book/intro.html" in PAGES and len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_without_errors(browser, site, path):
    page, problems = _open(browser, site + path)
    if page.locator(".math").count():
        page.wait_for_selector("mjx-container", timeout=10_000)   # MathJax typeset the equations
        assert page.locator("mjx-container").count() >= page.locator("div.math").count()
    page.close()
    assert not problems, problems


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("id", "name"):
            if attrs.get(name):
                self.ids.add(attrs[name])
        for name in ("href", "src"):
            if attrs.get(name) and not (tag == "link" and attrs.get("rel") == "canonical"):
                self.refs.append(attrs[name])


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("path", PAGES)
def test_internal_links_images_and_anchors_resolve(path):
    source = SITE / path
    broken = []
    for ref in _parse(source).refs:
        parts = urlsplit(ref)
        if parts.scheme or ref.startswith(("//", "mailto:", "javascript:")):
            continue                                   # external: not reachable from here
        target = (source.parent / unquote(parts.path)).resolve() if parts.path else source
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{ref}: no file {target}")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
            broken.append(f"{ref}: no anchor #{parts.fragment} in {target.relative_to(SITE)}")
    assert not broken, broken


@pytest.mark.parametrize("path", CHAPTERS + ["book/intro.html"])
def test_citations_resolve_to_the_bibliography(path):
    html = (SITE / path).read_text(encoding="utf-8")
    cites = re.findall(r'href="(references\.html#[^"]+)"', html)
    assert cites, f"{path} cites nothing"
    ids = _parse(SITE / "book" / "references.html").ids
    assert all(c.split("#", 1)[1] in ids for c in cites)
    assert "Zhao" in (SITE / "book" / "references.html").read_text(encoding="utf-8")


EXPLORER_PAGES = [p for p in CHAPTERS if "sanmini-explorer" in (SITE / p).read_text(encoding="utf-8")]


def test_chapters_have_explorers():
    assert len(EXPLORER_PAGES) >= 4, EXPLORER_PAGES


@pytest.mark.parametrize("path", EXPLORER_PAGES)
def test_explorers_react_to_the_mouse(browser, site, path):
    page, problems = _open(browser, site + path)
    explorers = page.locator(".sanmini-explorer")
    for i in range(explorers.count()):
        ex = explorers.nth(i)
        ex.scroll_into_view_if_needed()
        canvas = ex.locator("canvas.sx-image")
        box = canvas.bounding_box()
        assert box and box["width"] > 100, "the explorer's image is not drawn"
        assert ex.locator(".sx-groups canvas").count() >= 1, "no weight panels"
        seen = set()
        for fx, fy in [(0.2, 0.3), (0.7, 0.6), (0.45, 0.85)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            seen.add((ex.get_attribute("data-pixel"), ex.get_attribute("data-footprint")))
        assert len({pixel for pixel, _ in seen}) == 3, "hovering did not move the footprint"
        assert len({footprint for _, footprint in seen}) >= 2 or "convolution" in ex.get_attribute("data-variant") \
            or "blur" in ex.get_attribute("data-variant"), "the footprint view did not change"
        canvas.click(position={"x": 5, "y": 5})
        assert ex.get_attribute("data-pixel") == "0,0"
        options = ex.locator("select.sx-variant option")
        if options.count() > 1:
            ex.locator("select.sx-variant").select_option(index=options.count() - 1)
            assert ex.get_attribute("data-variant") == options.nth(options.count() - 1).inner_text()
        if i == 0:
            SHOTS.mkdir(parents=True, exist_ok=True)
            ex.screenshot(path=str(SHOTS / (Path(path).stem + ".png")))
    page.close()
    assert not problems, problems
