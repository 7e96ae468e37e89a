"""The built book (_build/html, made by `make book`) in a real browser: headless Chromium, driven by
Playwright, over a server on 127.0.0.1.

Every page loads with no JavaScript error and no failed request; no internal link, image or anchor
is broken; equations are typeset by MathJax and citations resolve. Then, on every page at a
laptop's width (1280 x 900) and a phone's (390 x 844), the classes of layout problem a reader
meets are checked, so that none can come back on any page:

* no element of the article is wider than its column unless it scrolls inside its own box, and the
  page itself never scrolls sideways; an equation's number does not overlap its equation;
* no raw Markdown table syntax and no unresolved equation label (``{eq}``, ``eq-...``) in the text;
* every image is loaded and has a meaningful alt text (not a file name);
* no exercise solution's output is visible before its toggle is opened;
* every attention explorer responds to the mouse, to a finger (tap and drag, which must not scroll
  the page) and to the keyboard, and its caption names the chosen model's footprint.

A screenshot of every page at both widths, and of each chapter's first explorer, is written to
_build/screenshots/ for review.

Needs Debian's Chromium (`apt-get install chromium chromium-driver`, as root; .ci/run does this);
without it these tests are skipped with that message.
"""
from __future__ import annotations

import functools
import http.server
import json
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
CHAPTERS = [p for p in PAGES if re.match(r"book/\d\d[a-z]?_", p)]


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


VIEWPORTS = {"laptop": dict(width=1280, height=900), "phone": dict(width=390, height=844)}


def _open(browser, url, viewport="laptop"):
    """Open a page; return it with the errors it reported: console errors, page errors,
    failed requests and HTTP error responses."""
    phone = viewport == "phone"
    page = browser.new_page(viewport=VIEWPORTS[viewport], has_touch=phone, is_mobile=phone,
                            device_scale_factor=1)
    problems = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    # MathJax typesets after the load event and moves what follows: wait until it is done.
    page.wait_for_function("() => !document.querySelector('div.math, span.math') || "
                           "(window.MathJax && MathJax.startup && MathJax.startup.document && "
                           "document.querySelector('mjx-container'))", timeout=15_000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")
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


def _explorers(page):
    """Each explorer of the page, its image scrolled to the middle of the window (clear of the
    sticky header): (index, explorer, its image)."""
    explorers = page.locator(".sanmini-explorer")
    for i in range(explorers.count()):
        ex = explorers.nth(i)
        canvas = ex.locator("canvas.sx-image")
        canvas.evaluate("e => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(100)
        yield i, ex, canvas


@pytest.mark.parametrize("path", EXPLORER_PAGES)
def test_explorers_react_to_the_mouse(browser, site, path):
    page, problems = _open(browser, site + path)
    for i, ex, canvas in _explorers(page):
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


def _pages_with(marker: str) -> list[str]:
    return [p for p in CHAPTERS if marker in (SITE / p).read_text(encoding="utf-8")]


CHOOSER_PAGES = _pages_with("sanmini-chooser")
PLAYGROUND_PAGES = _pages_with("sanmini-footprint")


@pytest.mark.parametrize("pages", [CHOOSER_PAGES, PLAYGROUND_PAGES], ids=["figure chooser", "footprint playground"])
def test_a_chapter_has_the_widget(pages):
    assert pages, "no page holds one"


@pytest.mark.parametrize("path", CHOOSER_PAGES)
def test_figure_choosers_show_the_chosen_figure(browser, site, path):
    page, problems = _open(browser, site + path)
    choosers = page.locator(".sanmini-chooser")
    for i in range(choosers.count()):
        chooser = choosers.nth(i)
        figures = chooser.locator("img.fc-figure")
        assert figures.count() >= 2
        for k in range(figures.count()):
            chooser.locator("select").select_option(index=k)
            visible = [j for j in range(figures.count()) if figures.nth(j).is_visible()]
            assert visible == [k], f"chooser {i} of {path}: option {k} shows figures {visible}"
            assert figures.nth(k).evaluate("im => im.complete && im.naturalWidth > 100")
    page.close()
    assert not problems, problems


FACETED_PAGES = _pages_with('"facets":[')


def test_a_chapter_has_a_relation_playground():
    assert FACETED_PAGES, "no page holds an explorer with facets"


@pytest.mark.parametrize("path", FACETED_PAGES)
def test_relation_playground_menus_pick_the_trained_variant(browser, site, path):
    """Each facet menu, set to each of its values, shows the variant closest_variant picks (the
    asked-for combination where it was trained), and the other menus follow it."""
    from sanmini.viz.explorer import closest_variant
    page, problems = _open(browser, site + path)
    for i, ex, canvas in _explorers(page):
        data = json.loads(ex.locator("script.sx-data").inner_text())
        if "facets" not in data:
            continue
        keys = [f["name"] for f in data["facets"]]
        facets = {v["name"]: {key: data["facets"][k]["values"][c] for k, (key, c) in enumerate(zip(keys, v["choice"]))}
                  for v in data["variants"] if v["choice"] is not None}
        menus = ex.locator("select.sx-facet")
        assert menus.count() == len(keys)
        values = {key: data["facets"][k]["values"] for k, key in enumerate(keys)}
        menu_values = lambda: {key: values[key][int(menus.nth(k).input_value())] for k, key in enumerate(keys)}
        for target in facets:              # reach every trained variant, one menu after the other
            for k, key in enumerate(keys):
                wanted = {**menu_values(), key: facets[target][key]}
                menus.nth(k).select_option(str(values[key].index(facets[target][key])))
                name = ex.get_attribute("data-variant")
                assert name == closest_variant(facets, wanted, key), (target, key, name)
                assert menu_values() == facets[name], "the other menus did not follow the variant shown"
                side = round(len(ex.get_attribute("data-footprint").split(",")) ** 0.5)
                assert all(s.inner_text() == str(side) for s in ex.locator(".sx-k").all())
            assert ex.get_attribute("data-variant") == target
    page.close()
    assert not problems, problems


@pytest.mark.parametrize("path", PLAYGROUND_PAGES)
def test_footprint_playground_follows_the_window_rule(browser, site, path):
    from sanmini.ops import output_size
    page, problems = _open(browser, site + path)
    root = page.locator(".sanmini-footprint").first
    data = json.loads(root.locator("script.fp-data").inner_text())
    H, W = data["height"], data["width"]
    canvas = root.locator("canvas")
    canvas.evaluate("e => e.scrollIntoView({block: 'center'})")
    for K, s, p, d, mode in [(3, 1, 1, 1, "zeros"), (5, 2, 0, 1, "reflect"), (7, 3, 4, 2, "reflect"), (9, 1, 8, 1, "zeros")]:
        for name, v in (("k", K), ("stride", s), ("padding", p), ("dilation", d), ("mode", mode)):
            root.locator(f"select.fp-{name}").select_option(str(v))
        assert root.get_attribute("data-output") == f"{output_size(H, K, s, p, d)}x{output_size(W, K, s, p, d)}"
        box = canvas.bounding_box()
        seen = set()
        for fx, fy in [(0.3, 0.3), (0.6, 0.7)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            ho, wo = map(int, root.get_attribute("data-pixel").split(","))
            want = [f"{ho * s - p + ki * d},{wo * s - p + kj * d}" for ki in range(K) for kj in range(K)]
            assert root.get_attribute("data-taps").split() == want
            seen.add((ho, wo))
        assert len(seen) == 2, "moving the pointer did not move the output pixel"
        canvas.focus()
        before = root.get_attribute("data-pixel")
        page.keyboard.press("ArrowUp")
        ho, wo = map(int, before.split(","))
        assert root.get_attribute("data-pixel") == f"{max(ho - 1, 0)},{wo}"
    page.close()
    assert not problems, problems


# --- the layout a reader sees, on every page at both widths ---------------------------------------

_LAYOUT_JS = r"""() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const column = article.getBoundingClientRect();
  const clips = el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);   // scrolls: nothing is lost
  const inside = r => r.left >= column.left - 1 && r.right <= column.right + 1;
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).slice(0, 2).join(".") : "");
  const wide = [];
  for (const el of article.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || inside(r)) continue;
    let held = false;
    for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
      if (clips(p) && inside(p.getBoundingClientRect())) { held = true; break; }
    }
    if (!held) wide.push(`${name(el)} spans ${Math.round(r.left)}..${Math.round(r.right)} px in a column of ` +
                         `${Math.round(column.left)}..${Math.round(column.right)}: "${(el.textContent || "").trim().slice(0, 50)}"`);
  }
  const jammed = [];
  for (const math of article.querySelectorAll("div.math")) {
    const number = math.querySelector(".eqno"), formula = math.querySelector("mjx-container");
    if (!number || !formula) continue;
    const a = number.getBoundingClientRect(), b = formula.getBoundingClientRect();
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
      jammed.push(`${number.textContent.trim()} overlaps its equation`);
  }
  // The text a reader reads: outside code, outputs printed as text and the explorers' data.
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest("pre, code, script, style, .highlight, mjx-container") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const text = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) text.push(n.textContent);
  const images = [...document.querySelectorAll("img")].map(img => ({
    src: img.getAttribute("src"), alt: img.getAttribute("alt") || "", loaded: img.complete && img.naturalWidth > 0}));
  return {wide, jammed, text: text.join(" "), images,
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def _layout(page):
    if page.locator("div.math").count():
        page.wait_for_selector("mjx-container", timeout=10_000)
    page.wait_for_timeout(200)
    return page.evaluate(_LAYOUT_JS)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("path", PAGES)
def test_page_layout_fits_the_column(browser, site, path, viewport):
    page, problems = _open(browser, site + path, viewport)
    found = _layout(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{path.replace('/', '_')[:-5]}-{viewport}.png"), full_page=True)
    page.close()
    assert not problems, problems
    assert found["pageWidth"] <= found["viewport"], \
        f"the page scrolls sideways: {found['pageWidth']} px in a {found['viewport']} px window"
    assert not found["wide"], found["wide"][:8]
    assert not found["jammed"], found["jammed"]
    text = found["text"]
    raw_table = re.search(r"\|\s*:?-{3,}:?\s*\||\|\s[^|\n]{1,40}\s\|\s[^|\n]{1,40}\s\|", text)   # |---| or | a | b |
    assert not raw_table, f"raw Markdown table syntax in the text: {raw_table[0]!r}"
    label = re.search(r"\{eq\}|\(eq-[\w-]+\)|\beq-[a-z][\w-]*", text)
    assert not label, f"an unresolved equation reference in the text: {label[0]!r}"
    for image in found["images"]:
        assert image["loaded"], f"image not loaded: {image['src']}"
        alt = image["alt"].strip()
        assert len(alt.split()) >= 2 and not re.search(r"[0-9a-f]{16}|\.(png|jpe?g|svg|gif)$", alt), \
            f"image {image['src']} has no meaningful alt text: {alt!r}"


SOLUTION_PAGES = [p for p in CHAPTERS if "tag_hide-cell" in (SITE / p).read_text(encoding="utf-8")]


def test_chapters_have_folded_solutions():
    assert len(SOLUTION_PAGES) >= 5, SOLUTION_PAGES


@pytest.mark.parametrize("path", SOLUTION_PAGES)
def test_exercise_solutions_are_hidden_until_opened(browser, site, path):
    page, problems = _open(browser, site + path)
    solutions = page.locator("div.cell.tag_hide-cell")
    assert solutions.count() >= 1
    for i in range(solutions.count()):
        cell = solutions.nth(i)
        parts = cell.locator(".cell_input, .cell_output")
        assert parts.count() >= 1
        assert not any(parts.nth(k).is_visible() for k in range(parts.count())), \
            f"solution {i} of {path} shows its code or output before it is opened"
        cell.locator("summary").first.click()
        page.wait_for_timeout(100)
        assert all(parts.nth(k).is_visible() for k in range(parts.count())), f"solution {i} does not open"
    page.close()
    assert not problems, problems


@pytest.mark.parametrize("path", EXPLORER_PAGES)
def test_explorers_respond_to_touch_and_keyboard(browser, site, path):
    page, problems = _open(browser, site + path, "phone")
    cdp = page.context.new_cdp_session(page)
    for _, ex, canvas in _explorers(page):
        label = canvas.get_attribute("aria-label") or ""
        assert canvas.get_attribute("tabindex") == "0" and "pixels" in label and "Arrow keys" in label
        box = canvas.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, "the explorer's image is wider than the phone"
        # A tap picks the pixel under the finger.
        page.touchscreen.tap(box["x"] + 2, box["y"] + 2)
        assert ex.get_attribute("data-pixel") == "0,0"
        # A drag moves it, and does not scroll the page.
        scrolled = page.evaluate("window.scrollY")
        points = [(box["x"] + f * box["width"], box["y"] + f * box["height"]) for f in (0.2, 0.5, 0.8)]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
        seen = set()
        for x, y in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            page.wait_for_timeout(50)
            seen.add(ex.get_attribute("data-pixel"))
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        assert len(seen) == 2, "dragging a finger over the image did not move the pixel"
        assert page.evaluate("window.scrollY") == scrolled, "dragging on the image scrolled the page"
        # The keyboard: focus the image, move with the arrow keys.
        canvas.focus()
        row, col = map(int, ex.get_attribute("data-pixel").split(","))
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")
        assert ex.get_attribute("data-pixel") == f"{row + 1},{col + 1}"
        # The caption names the chosen model's footprint.
        select = ex.locator("select.sx-variant")
        sides = ex.locator(".sx-k")
        for k in range(ex.locator("select.sx-variant option").count()):
            select.select_option(index=k)
            name = ex.get_attribute("data-variant")
            side = round(len(ex.get_attribute("data-footprint").split(",")) ** 0.5)
            assert all(sides.nth(j).inner_text() == str(side) for j in range(sides.count())), \
                f"the caption does not name {name}'s {side} x {side} footprint"
    page.close()
    assert not problems, problems


def test_api_page_shows_no_stock_docstrings_and_one_citation_style():
    html = (SITE / "book" / "api.html").read_text(encoding="utf-8")
    assert "Define the computation performed at every call" not in html
    references = (SITE / "book" / "references.html").read_text(encoding="utf-8")
    assert "ZJK20" not in references and "Zhao et al., 2020" in references
