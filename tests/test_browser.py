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
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import headless_chromium

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
playwright = headless_chromium.require()
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
    with headless_chromium.launched(playwright) as b:
        yield b


VIEWPORTS = {"laptop": dict(width=1280, height=900), "phone": dict(width=390, height=844)}


_REFRESH = re.compile(r'http-equiv="refresh"[^>]*url=([^"\s]+)"', re.IGNORECASE)


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
    # The root index.html only redirects (a meta refresh) to the introduction: wait until the
    # introduction has loaded, or what follows would measure whichever of the two is on screen.
    served = SITE / unquote(urlsplit(url).path).lstrip("/")
    target = _REFRESH.search(served.read_text(encoding="utf-8")) if served.is_file() else None
    if target:
        page.wait_for_url("**/" + target.group(1).lstrip("./"), wait_until="load", timeout=30_000)
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
    # The article first (once, in a fresh clone on a loaded machine, the first page had none yet).
    page.wait_for_selector("article.bd-article, main", timeout=30_000)
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
        summary = cell.locator("summary").first
        assert "solution" in summary.inner_text().lower(), f"solution {i}'s toggle says {summary.inner_text()!r}"
        summary.click()
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


# --- what a reader on a phone needs: navigation, readable figures and tables, widgets that fit ------

sys.path.insert(0, str(ROOT / "book" / "_ext"))
from sanmini_book import FLOOR_PX  # noqa: E402  (the floor the site keeps figures above)


@pytest.mark.parametrize("path", PAGES)
def test_phone_menu_and_contents_buttons_open_their_drawers(browser, site, path):
    """At 390 px the menu button a reader sees opens the chapter list, and the contents button (on
    pages that have one) opens the page's contents, on screen."""
    page, problems = _open(browser, site + path, "phone")
    visible = lambda selector: [b for b in page.locator(selector).all() if b.is_visible()]
    menus = visible("button.primary-toggle")
    assert menus, "no menu button on screen"
    menus[0].tap()
    dialog = page.locator("#pst-primary-sidebar-modal")
    dialog.wait_for(state="visible", timeout=3_000)
    chapters = dialog.locator("nav.bd-docs-nav a.reference.internal")
    assert chapters.count() >= len(CHAPTERS), "the drawer does not list the chapters"
    box = chapters.first.bounding_box()
    assert box and 0 <= box["x"] < 390 and 0 <= box["y"] < 844, "the chapter list is off screen"
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden", timeout=3_000)
    contents = visible("button.secondary-toggle")
    if contents:
        contents[0].tap()
        drawer = page.locator("#pst-secondary-sidebar-modal")
        drawer.wait_for(state="visible", timeout=3_000)
        links = drawer.locator("nav a")
        assert links.count() >= 1 and links.first.is_visible(), "the contents drawer is empty"
        box = links.first.bounding_box()
        assert 0 <= box["x"] < 390 and 0 <= box["y"] < 844, "the page contents are off screen"
    page.close()
    assert not problems, problems


def test_laptop_menu_button_folds_the_sidebar_away_and_back(browser, site):
    page, problems = _open(browser, site + CHAPTERS[0])
    sidebar = page.locator("#pst-primary-sidebar")
    article = page.locator("article.bd-article")
    width = article.bounding_box()["width"]
    buttons = [b for b in page.locator("button.primary-toggle").all() if b.is_visible()]
    assert len(buttons) == 1, "one menu button on a laptop"
    buttons[0].click()
    page.wait_for_timeout(600)                           # the theme's animation
    assert not sidebar.is_visible() or sidebar.evaluate("e => getComputedStyle(e).visibility") == "hidden"
    assert not page.locator("#pst-primary-sidebar-modal").is_visible(), "a drawer opened instead"
    assert article.bounding_box()["width"] > width + 50, "the article did not widen"
    buttons[0].click()
    page.wait_for_timeout(600)
    assert sidebar.evaluate("e => getComputedStyle(e).visibility") == "visible"
    # The top bar held nothing but a second search box: on a laptop one search field is shown.
    searches = [s for s in page.locator("form.bd-search, button.search-button, .search-button-field").all() if s.is_visible()]
    assert len(searches) == 1, f"{len(searches)} search boxes on screen"
    page.close()
    assert not problems, problems


_FIGURES_JS = r"""() => [...document.querySelectorAll("article img")].map(img => ({
  src: (img.getAttribute("src") || "").slice(0, 60), noText: img.dataset.textPx === "none",
  textPx: parseFloat(img.dataset.textPx || "NaN"),
  shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
  figure: !!img.closest(".cell_output, .sanmini-chooser") && /\.png$|^data:image\/png/.test(img.getAttribute("src") || "")}))"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("path", CHAPTERS + ["book/intro.html"])
def test_figure_text_is_readable_where_it_is_shown(browser, site, path, viewport):
    """Every Matplotlib figure records the height of its smallest text (book/_ext/figure_text.py);
    drawn at the width the page gives it, that text is at least FLOOR_PX CSS pixels."""
    page, problems = _open(browser, site + path, viewport)
    for chooser in page.locator(".sanmini-chooser").all():   # a chooser's hidden figures: show each
        for k in range(chooser.locator("img.fc-figure").count()):
            chooser.locator("select").select_option(index=k)
    small = []
    for fig in page.evaluate(_FIGURES_JS):
        if not fig["figure"] or fig["shown"] == 0 or fig["noText"]:
            continue
        assert fig["textPx"] == fig["textPx"], f"figure {fig['src']} records no text size (was it drawn in the build?)"
        rendered = fig["textPx"] * fig["shown"] / fig["natural"]
        if rendered < FLOOR_PX - 0.05:
            small.append(f"{fig['src']}: smallest text {rendered:.1f} px")
    page.close()
    assert not problems, problems
    assert not small, small


_TABLES_JS = r"""() => [...document.querySelectorAll("article table")]
  .filter(t => !t.closest(".sanmini-explorer, .sanmini-footprint, .sanmini-chooser") && t.getBoundingClientRect().width > 0)
  .map(t => ({head: (t.querySelector("tr") || t).textContent.trim().replace(/\s+/g, " ").slice(0, 60),
              overflow: t.scrollWidth - t.clientWidth,
              right: Math.max(...[...t.querySelectorAll("td, th")].map(c => c.getBoundingClientRect().right)),
              column: document.querySelector("article.bd-article").getBoundingClientRect().right}))"""

_SCROLLERS_JS = r"""() => [...document.querySelectorAll("article *")].filter(e =>
    ["auto", "scroll"].includes(getComputedStyle(e).overflowX) && e.scrollWidth > e.clientWidth + 1 &&
    e.getBoundingClientRect().height > 0 && !e.closest(".sanmini-explorer, .sanmini-footprint"))
  .map(e => ({what: e.tagName.toLowerCase() + "." + [...e.classList].slice(0, 2).join("."),
              cue: e.classList.contains("sx-scrolls"), text: (e.textContent || "").trim().slice(0, 40)}))"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("path", PAGES)
def test_tables_show_every_column_and_scrolling_boxes_say_so(browser, site, path, viewport):
    """No table hides a column off screen (on a phone a wide table becomes one card per row); any
    other box that scrolls sideways (a long equation, a code line, a wide figure) shows a cue."""
    page, problems = _open(browser, site + path, viewport)
    page.evaluate("() => window.sanminiLayout && window.sanminiLayout()")
    tables = page.evaluate(_TABLES_JS)
    hidden = [t for t in tables if t["overflow"] > 1 or t["right"] > t["column"] + 1]
    boxes = [b for b in page.evaluate(_SCROLLERS_JS) if not b["cue"]]
    page.close()
    assert not problems, problems
    assert not hidden, [f"table '{t['head']}': {t['overflow']} px off screen" for t in hidden]
    assert not boxes, f"boxes that scroll with no cue: {boxes[:5]}"


@pytest.mark.parametrize("path", EXPLORER_PAGES + PLAYGROUND_PAGES + CHOOSER_PAGES)
def test_widgets_fit_a_phone_screen(browser, site, path):
    """On a phone a finger on an explorer's image sees a weight map change at the same time: the
    image and the first weight map are on screen together, below the sticky header, and the "Back to
    top" button stays away. The playground and the chooser fit the screen whole. No menu offers a
    single choice."""
    page, problems = _open(browser, site + path, "phone")
    header = page.evaluate("() => Math.max(0, ...[...document.querySelectorAll('.bd-header-article, header.bd-header')]"
                           ".filter(e => getComputedStyle(e).position === 'sticky' || getComputedStyle(e).position === 'fixed')"
                           ".map(e => e.getBoundingClientRect().height))")
    room = 844 - header
    for ex in page.locator(".sanmini-explorer").all():
        image, first_map = ex.locator("canvas.sx-image"), ex.locator(".sx-groups canvas").first
        a, b = image.bounding_box(), first_map.bounding_box()
        span = max(a["y"] + a["height"], b["y"] + b["height"]) - min(a["y"], b["y"])
        assert span <= room, f"image and first weight map span {span:.0f} px; the screen shows {room:.0f}"
        image.evaluate("e => e.scrollIntoView({block: 'center'})")
        box = image.bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        top = page.locator("#pst-back-to-top")
        assert not top.count() or not top.is_visible(), "the Back to top button floats over the explorer"
        for select in ex.locator("select").all():
            assert select.locator("option").count() >= 2, "a menu with a single choice"
    for widget in page.locator(".sanmini-footprint, .sanmini-chooser").all():
        height = widget.bounding_box()["height"]
        assert height <= room, f"a widget {height:.0f} px tall; the screen shows {room:.0f}"
    page.close()
    assert not problems, problems


def test_search_snippets_are_the_articles_text(browser, site):
    """The snippet under each search result is the page's own text: no page buttons or links of the
    page's frame, and equations in symbols, not LaTeX source."""
    page, problems = _open(browser, site + "search.html?q=relation")
    page.wait_for_selector("ul.search li p.context", timeout=20_000)
    page.wait_for_timeout(1500)                         # the snippets arrive page by page
    snippets = [p.inner_text() for p in page.locator("ul.search li p.context").all()]
    page.close()
    assert not problems, problems
    assert len(snippets) >= 3, snippets
    for text in snippets:
        assert not re.search(r"\\[()\[\]]|\\[a-zA-Z]+\{?", text), f"LaTeX source in a snippet: {text[:120]!r}"
        assert not re.search(r"\.ipynb|\.pdf|Toggle|Launch|Binder|Download", text), \
            f"the page's frame in a snippet: {text[:120]!r}"
