"""The live path of the book's widgets, in a real Jupyter: what a reader who runs a chapter in
JupyterLab (or Colab) sees, as opposed to the published page's self-contained HTML (test_browser.py).

A JupyterLab server is started on 127.0.0.1 (a free port, a token, a temporary root folder holding a
copy of chapter 2 and a small notebook of widgets written here; the kernel is this Python, with the
repository importable and the cache folders and one thread per process as the Makefile sets them).
Headless Chromium opens each notebook in JupyterLab, runs all its cells from the Run menu and waits
until every cell has run. Then each kind of live widget is driven through the ipywidgets controls
JupyterLab draws, as a reader would (menus chosen, a slider's number typed, a slider moved with the
arrow keys), and after each change:

* the kernel holds the value the page set (the page's control reached the Python widget);
* the figure the page shows is, pixel for pixel, the one the Python object draws for those values
  (rendered again in the kernel by a fresh ``widget()`` of the same object), and differs from the
  figure before the change;
* what the figure says is what sanmini computes: the footprint playground's title gives
  ``sanmini.ops.output_size`` for the chosen K, stride, padding and dilation; a facet menu of the
  explorer shows the variant ``closest_variant`` picks, and the other menus follow it; the chooser
  shows the PNG of the chosen entry, byte for byte;
* the page logs no JavaScript error.

The kernel is asked through its connection file (jupyter_client), beside the page's own connection,
and only once it has been idle for a moment after the page's last change: ipykernel runs a widget
message that arrives during a request at once, beside it, and a figure drawn then can come out blank.
Chapter 2 has an attention explorer (sliders) and a footprint playground; the small notebook has the
widgets chapter 2 lacks: an explorer with a model menu, one with facet menus, a figure chooser over
three small Matplotlib figures (as chapter 5b builds its own), and a playground on an image so small
that some settings do not fit, whose message is checked.

Needs Debian's Chromium (`apt-get install chromium chromium-driver`, as root; .ci/run does this);
without it these tests are skipped with that message. JupyterLab is in requirements.lock.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import headless_chromium

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "02_convolution.ipynb"
playwright = headless_chromium.require()
pytest.importorskip("jupyterlab", reason="JupyterLab is part of requirements.lock: run make setup")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402
from jupyter_client import BlockingKernelClient  # noqa: E402
from PIL import Image  # noqa: E402

from sanmini.ops import output_size  # noqa: E402
from sanmini.viz.explorer import closest_variant  # noqa: E402

SERVER_START_S = 60       # JupyterLab answers its API
RUN_ALL_S = 150           # every cell of a notebook has run (chapter 2: about 15 s on a busy core)
UPDATE_S = 20             # the page shows what a change of a control asked for

# The small notebook's widgets (the facets, as chapter 3's relation playground has them: not every
# combination is trained, so a menu can pick a variant that moves the other menus).
FACETS = {
    "summation + position": {"relation": "summation", "position encoding": "on", "footprint": "7 x 7"},
    "summation, no position": {"relation": "summation", "position encoding": "off", "footprint": "7 x 7"},
    "subtraction + position": {"relation": "subtraction", "position encoding": "on", "footprint": "7 x 7"},
    "subtraction, 5 x 5": {"relation": "subtraction", "position encoding": "on", "footprint": "5 x 5"},
}
CURVES = ["sine", "cosine", "ramp"]
TINY = 6                  # the side of the small playground's image: K = 9 does not fit on it
WIDGETS_NOTEBOOK = ["""\
import matplotlib.pyplot as plt
import numpy as np
import torch
from sanmini.viz import AttentionExplorer, FigureChooser, FootprintPlayground

torch.manual_seed(0)
image = torch.rand(3, 12, 12)
def weights(k, signed=False):
    w = torch.rand(2, k * k, 12, 12)
    return w - 0.5 if signed else w.softmax(1)""", f"""\
def curve(name):
    fig, ax = plt.subplots(figsize=(3, 2))
    t = np.linspace(0, 6, 60)
    ax.plot(t, {{"sine": np.sin(t), "cosine": np.cos(t), "ramp": t / 6}}[name])
    ax.set_title(name)
    return fig


chooser = FigureChooser({{name: curve(name) for name in {CURVES!r}}},
                        {{name: f"A line plot of the {{name}} curve over six units" for name in {CURVES!r}}},
                        label="curve")
chooser.show()""", """\
menu_explorer = AttentionExplorer(image, {"pairwise": weights(7), "patchwise": weights(3, signed=True)}, scale=4)
menu_explorer.show()""", f"""\
FACETS = {FACETS!r}
variants = {{name: weights(int(f["footprint"][0])) for name, f in FACETS.items()}}
variants["convolution"] = weights(7, signed=True)[:, :, :1, :1].expand(2, 49, 12, 12)
facet_explorer = AttentionExplorer(image, variants, reference="convolution", scale=4, facets=FACETS)
facet_explorer.show()""", f"""\
tiny = FootprintPlayground(torch.rand(3, {TINY}, {TINY}), scale=4)
tiny.show()"""]

# Defined in each kernel once: what the tests ask it. The live controls of an object's widgets are
# those whose observers close over the object (its ``draw`` or ``pick``); the figure it draws for
# given values comes from a fresh ``widget()`` of the same object, its controls set to those values,
# with plt.show replaced by a recorder of what the inline backend would send.
KERNEL_HELPERS = r'''
def _live_helpers():
    import contextlib, gc, io
    import ipywidgets
    import matplotlib.pyplot as plt
    from ipywidgets.widgets.widget import _instances

    def closes_over(function, obj):
        for cell in getattr(function, "__closure__", None) or ():
            try:
                if cell.cell_contents is obj:
                    return True
            except ValueError:                      # an empty cell
                pass
        return False

    def controls(obj, ids):
        found = {}
        for key in ids:
            w = _instances.get(key)
            if w is None or isinstance(w, ipywidgets.Output) or not hasattr(w, "value"):
                continue
            if any(closes_over(f, obj) for f in w._trait_notifiers.get("value", {}).get("change", [])):
                found[w.description] = w
        return found

    def one(cls):
        found = [o for o in gc.get_objects() if isinstance(o, cls)]
        assert len(found) == 1, f"{len(found)} live {cls.__name__} objects, expected one"
        return found[0]

    def values(obj):
        return {name: w.value for name, w in controls(obj, list(_instances)).items()}

    def drawn(obj, settings):
        """What obj's widget shows for these control values: the last draw's figure (its PNG as
        the inline backend sends it, and its axes' titles) and the lines it printed. Each draw
        starts with its output's clear_output, which forgets what the previous draw showed."""
        figures, text, shell = [], io.StringIO(), get_ipython()

        def show(*args, **kwargs):
            fig = plt.gcf()
            figures.append({"png": shell.display_formatter.format(fig)[0]["image/png"],
                            "titles": [ax.get_title() for ax in fig.axes]})
            plt.close(fig)

        clear = ipywidgets.Output.clear_output

        def clear_output(self, *args, **kwargs):
            figures.clear()
            text.seek(0)
            text.truncate()
            return clear(self, *args, **kwargs)

        before = set(_instances)
        real_show, plt.show, ipywidgets.Output.clear_output = plt.show, show, clear_output
        try:
            with contextlib.redirect_stdout(text):
                obj.widget()
                fresh = controls(obj, set(_instances) - before)
                # Menus first, the hidden variant dropdown of a faceted explorer ("") after them.
                for name in sorted(settings, key=lambda n: (n == "", n)):
                    fresh[name].value = settings[name]
        finally:
            plt.show, ipywidgets.Output.clear_output = real_show, clear
            for key in set(_instances) - before:
                if key in _instances:
                    _instances[key].close()
        return {"figure": figures[-1] if figures else None, "text": text.getvalue().strip().splitlines()}

    return {"one": one, "values": values, "drawn": drawn}


_live = _live_helpers()
'''


class Kernel:
    """The notebook's kernel, reached through its connection file beside the page's connection."""

    MARK = "@@live@@"

    def __init__(self, connection_file: Path):
        self.client = BlockingKernelClient()
        self.client.load_connection_file(str(connection_file))
        self.client.start_channels()
        self.client.wait_for_ready(timeout=30)
        self.run(KERNEL_HELPERS)

    def run(self, code: str) -> str:
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
        reply = self.client.execute_interactive(code, timeout=60, output_hook=hook, store_history=False,
                                                allow_stdin=False)
        content = reply["content"]
        if content["status"] != "ok":
            raise AssertionError("the kernel failed to answer the test:\n" + "\n".join(content.get("traceback", [])))
        return "".join(out)

    def ask(self, expression: str):
        """The JSON value of a Python expression in the notebook's namespace."""
        text = self.run(f"print({self.MARK!r} + __import__('json').dumps({expression}))")
        lines = [line for line in text.splitlines() if line.startswith(self.MARK)]
        assert lines, f"no answer from the kernel to {expression}: {text[-500:]}"
        return json.loads(lines[-1][len(self.MARK):])

    def values(self, obj: str) -> dict:
        return self.ask(f"_live['values']({obj})")

    def wait_for_values(self, obj: str, wanted: dict) -> dict:
        """Wait until the kernel's controls of ``obj`` hold ``wanted`` (the page's change arrived)."""
        deadline = time.monotonic() + UPDATE_S
        while True:
            values = self.values(obj)
            if all(values.get(k) == v for k, v in wanted.items()):
                return values
            if time.monotonic() > deadline:
                raise AssertionError(f"the page set {wanted} but the kernel's controls of {obj} hold {values}")
            time.sleep(0.2)

    def drawn(self, obj: str, values: dict) -> dict:
        return self.ask(f"_live['drawn']({obj}, {values!r})")

    def close(self):
        self.client.stop_channels()


class Jupyter:
    """A JupyterLab server on 127.0.0.1 over a temporary root folder, with its own settings."""

    def __init__(self, tmp: Path):
        self.tmp, self.token = tmp, secrets.token_hex(16)
        self.root, self.runtime = tmp / "root", tmp / "runtime"
        for d in ("root", "config", "data", "runtime", "workspaces"):
            (tmp / d).mkdir()
        settings = tmp / "settings" / "@jupyterlab"
        # Every cell in the page (no windowing, which leaves cells out of view undrawn), and no
        # question about fetching news (nothing outside is reachable).
        (settings / "notebook-extension").mkdir(parents=True)
        (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
        (settings / "apputils-extension").mkdir(parents=True)
        (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {k: v for k, v in os.environ.items() if k not in ("SANMINI_STATIC_HTML", "PYTHONSTARTUP")}
        env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.runtime), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        # As the Makefile sets them for the chapters (make test sets them already).
        env.setdefault("SANMINI_CACHE", str(ROOT / "_build" / ".sanmini-cache"))
        env.setdefault("NUMBA_CACHE_DIR", str(ROOT / "_build" / ".numba-cache"))
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("NUMBA_NUM_THREADS", "1")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.log = tmp / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                 f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={self.token}",
                 f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=None",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                self.api("status")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"JupyterLab did not start on {self.url}:\n{self.log_tail()}")
                time.sleep(0.3)

    def api(self, path: str):
        request = urllib.request.Request(self.url + "api/" + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)

    def kernel(self, notebook: str) -> Kernel:
        sessions = [s for s in self.api("sessions") if s["path"] == notebook]
        assert len(sessions) == 1, f"JupyterLab has {len(sessions)} sessions for {notebook}"
        return Kernel(self.runtime / f"kernel-{sessions[0]['kernel']['id']}.json")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    server = Jupyter(tmp)
    shutil.copy(CHAPTER, server.root / CHAPTER.name)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in WIDGETS_NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, server.root / "widgets.ipynb")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium.launched(playwright) as b:
        yield b


class Notebook:
    """A notebook open in JupyterLab, all its cells run, and its kernel."""

    def __init__(self, browser, jupyter: Jupyter, name: str):
        self.name, self.jupyter = name, jupyter
        self.page = browser.new_page(viewport=dict(width=1400, height=1000))
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        # ?reset: a fresh workspace, so that the notebook opened before is not opened again beside it.
        self.page.goto(f"{jupyter.url}lab/tree/{name}?reset&token={jupyter.token}")
        self.page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
        panels = self.page.locator(".jp-NotebookPanel").count()
        assert panels == 1, f"JupyterLab opened {panels} notebooks, expected {name} alone"
        self.page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
        prompts = self.page.locator(".jp-CodeCell .jp-InputPrompt")
        self.dialogs = []
        for attempt in range(3):
            # The notebook is made the current one (the Run menu acts on it), then Run > Run All Cells.
            try:
                self.dismiss_dialogs()
                self.page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
                self.page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click(timeout=10_000)
                self.page.get_by_role("menuitem", name="Run", exact=True).click(timeout=10_000)
                self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=10_000)
                self.page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                                            ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))", timeout=10_000)
                break
            except playwright.TimeoutError:
                self.page.keyboard.press("Escape")
        else:
            raise AssertionError(f"Run > Run All Cells did not start {name} in JupyterLab (dialogs seen: "
                                 f"{self.dialogs})")
        started = time.monotonic()
        while True:
            shown = prompts.all_inner_texts()
            if shown and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in shown):
                break
            failed = [t for t in self.page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
                      if "Traceback" in t or re.search(r"^\w*(Error|Exception)\b", t, re.M)]
            if failed:
                raise AssertionError(f"a cell of {name} failed in JupyterLab:\n{failed[0][-3000:]}")
            if time.monotonic() - started > RUN_ALL_S:
                raise AssertionError(f"{name} did not finish in {RUN_ALL_S} s in JupyterLab; the prompts: {shown}\n"
                                     f"server log:\n{jupyter.log_tail()}")
            time.sleep(0.25)
        self.run_s = time.monotonic() - started
        self.settle()
        self.kernel = jupyter.kernel(name)

    def dismiss_dialogs(self) -> None:
        """Close any JupyterLab dialog in the way (on a loaded machine the server can answer late,
        and JupyterLab then asks, e.g., which kernel to start or says it lost the server), with its
        default button; what each said is kept in ``dialogs`` for the failure messages."""
        dialogs = self.page.locator(".jp-Dialog")
        for _ in range(5):
            if not dialogs.count():
                return
            self.dialogs.append(" ".join(dialogs.first.inner_text().split()))
            accept = dialogs.first.locator(".jp-Dialog-button.jp-mod-accept")
            if accept.count():
                accept.first.click()
            else:
                self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(500)

    def cell(self, text: str):
        """The code cell whose source holds ``text``."""
        cell = self.page.locator(".jp-CodeCell").filter(has=self.page.locator(".jp-InputArea", has_text=text))
        assert cell.count() == 1, f"{cell.count()} cells of {self.name} hold {text!r}"
        return cell

    def control(self, cell, kind: str, label: str):
        """The live ipywidgets control of ``kind`` ('dropdown', 'slider') labelled ``label``."""
        box = cell.locator(f".jupyter-widgets.widget-{kind}").filter(
            has=self.page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$")))
        assert box.count() == 1, f"{box.count()} live {kind}s labelled {label!r}"
        return box

    def choose(self, cell, label: str, value):
        self.control(cell, "dropdown", label).locator("select").select_option(value=str(value))

    def type_into_slider(self, cell, label: str, value: int):
        """Type a number into the slider's readout, as a reader may, and press Enter."""
        readout = self.control(cell, "slider", label).locator(".widget-readout")
        readout.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(str(value))
        self.page.keyboard.press("Enter")

    def step_slider(self, cell, label: str, key: str, times: int):
        """Move the slider with the arrow keys, its handle focused."""
        self.control(cell, "slider", label).locator(".noUi-handle").focus()
        for _ in range(times):
            self.page.keyboard.press(key)

    def values(self, obj: str, wanted: dict) -> dict:
        """The kernel's control values of ``obj`` once they hold ``wanted`` (the page's change
        arrived), asked once the kernel has drawn what the page asked for."""
        self.settle()
        return self.kernel.wait_for_values(obj, wanted)

    def settle(self, quiet_s: float = 0.5):
        """Wait until the kernel has been idle for ``quiet_s`` seconds: the page's last change has
        been drawn, so that the test's own requests do not run beside its messages (ipykernel runs
        widget messages that arrive during a request at once, beside it)."""
        indicator = self.page.locator(".jp-Notebook-ExecutionIndicator")
        deadline, idle_since = time.monotonic() + UPDATE_S, None
        while True:
            now = time.monotonic()
            if indicator.get_attribute("data-status") != "idle":
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= quiet_s:
                return
            if now > deadline:
                raise AssertionError(f"the kernel of {self.name} is still busy {UPDATE_S} s after a change")
            time.sleep(0.05)

    def shown_png(self, cell) -> str | None:
        """The base64 PNG the live output of the cell's widget shows (None if it shows no image)."""
        image = cell.locator(".widget-output img")
        if not image.count():
            return None
        src = image.first.get_attribute("src") or ""
        return src.split(",", 1)[1] if src.startswith("data:image/png;base64,") else None

    def wait_for_figure(self, cell, figure: dict, what: str) -> str:
        """Wait until the cell's live output shows this figure, pixel for pixel; return its PNG."""
        want = _pixels(figure["png"])
        deadline = time.monotonic() + UPDATE_S
        while True:
            shown = self.shown_png(cell)
            if shown is not None and _same(_pixels(shown), want):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: the page does not show the figure the Python object draws "
                                     f"(titles {figure['titles']})")
            time.sleep(0.2)

    def close(self):
        self.kernel.close()
        self.page.close()


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGBA"))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


@pytest.fixture(scope="module")
def chapter(browser, jupyter):
    nb = Notebook(browser, jupyter, CHAPTER.name)
    yield nb
    nb.close()


@pytest.fixture(scope="module")
def widgets(browser, jupyter):
    nb = Notebook(browser, jupyter, "widgets.ipynb")
    yield nb
    nb.close()


def _check_change(nb: Notebook, cell, obj: str, wanted: dict, before: str, what: str) -> dict:
    """After the page set ``wanted``: the kernel holds it, and the page shows what the object draws
    for the kernel's values, which differs from ``before``. Returns the drawn figure."""
    values = nb.values(obj, wanted)
    drawn = nb.kernel.drawn(obj, values)
    assert drawn["figure"], f"{what}: the Python object drew no figure for {values} (it printed {drawn['text']})"
    shown = nb.wait_for_figure(cell, drawn["figure"], what)
    assert not _same(_pixels(shown), _pixels(before)), f"{what}: the figure did not change"
    drawn["png"] = shown
    return drawn



def _until(condition, message, seconds: float = None) -> None:
    """Wait until ``condition()`` holds, at most ``seconds`` (``UPDATE_S``); fail with ``message()``."""
    deadline = time.monotonic() + (UPDATE_S if seconds is None else seconds)
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.2)


def test_chapter_2_runs_in_jupyterlab_with_live_widgets(chapter):
    assert chapter.page.locator(".jp-CodeCell .widget-output img").count() >= 2, \
        "the chapter's explorer and playground show no live figure"
    assert not chapter.errors, chapter.errors


def test_explorer_sliders_move_the_pixel(chapter):
    cell, obj = chapter.cell("AttentionExplorer(small"), "_live['one'](AttentionExplorer)"
    values = chapter.kernel.values(obj)
    assert {"row", "column"} <= set(values), f"the explorer's live controls: {values}"
    first = chapter.kernel.drawn(obj, values)["figure"]
    shown = chapter.wait_for_figure(cell, first, "the explorer as the chapter shows it")
    chapter.type_into_slider(cell, "row", 5)
    drawn = _check_change(chapter, cell, obj, {"row": 5}, shown, "explorer, row 5 typed")
    assert drawn["figure"]["titles"][0] == f"pixel (5, {values['column']})"
    chapter.step_slider(cell, "column", "ArrowRight", 3)
    drawn = _check_change(chapter, cell, obj, {"column": values["column"] + 3}, drawn["png"],
                          "explorer, column moved with the arrow keys")
    assert drawn["figure"]["titles"][0] == f"pixel (5, {values['column'] + 3})"
    assert not chapter.errors, chapter.errors


def test_footprint_playground_follows_the_window_rule(chapter):
    cell, obj = chapter.cell("playground.show()"), "playground"
    height, width = chapter.kernel.ask("playground.image.shape[:2]")
    values = chapter.kernel.values(obj)
    assert {"K", "stride", "padding", "dilation", "mode", "output row", "output col"} <= set(values), values
    shown = chapter.wait_for_figure(cell, chapter.kernel.drawn(obj, values)["figure"], "the playground as the chapter shows it")
    settings = {"K": 3, "stride": 1, "padding": 1, "dilation": 1}
    for name, value, typed in [("K", 5, None), ("stride", 2, None), ("padding", 3, None), ("dilation", 2, None),
                               ("mode", "reflect", None), ("output row", 30, True), ("output col", 11, True)]:
        if typed:
            chapter.type_into_slider(cell, name, value)
        else:
            chapter.choose(cell, name, value)
        drawn = _check_change(chapter, cell, obj, {name: value}, shown, f"playground, {name} = {value}")
        shown = drawn["png"]
        values = {**values, name: value}
        settings.update({k: values[k] for k in settings})
        ho_max, wo_max = (output_size(n, settings["K"], settings["stride"], settings["padding"], settings["dilation"])
                          for n in (height, width))
        title = (f"output {ho_max} x {wo_max}; pixel ({min(values['output row'], ho_max - 1)}, "
                 f"{min(values['output col'], wo_max - 1)})")
        assert drawn["figure"]["titles"][0] == title, f"playground with {values}: {drawn['figure']['titles'][0]!r}, not {title!r}"
    assert not chapter.errors, chapter.errors


def test_figure_chooser_shows_the_chosen_figure(widgets):
    cell = widgets.cell("chooser.show()")
    pngs = widgets.kernel.ask("{name: __import__('base64').b64encode(png).decode() for name, png in chooser.png.items()}")
    assert list(pngs) == CURVES
    image = cell.locator(".jupyter-widgets.widget-image")
    assert image.count() == 1, "the chooser shows no live image"

    def shown():
        return image.evaluate("""async im => { const b = new Uint8Array(await (await fetch(im.src)).arrayBuffer());
            let s = ""; for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
            return btoa(s); }""")
    assert shown() == pngs[CURVES[0]], "the chooser does not show its first figure first"
    for name in CURVES[1:] + CURVES[:1]:
        widgets.choose(cell, "curve", name)
        widgets.values("chooser", {"curve": name})
        _until(lambda: shown() == pngs[name], lambda: f"choosing {name!r} does not show the {name} figure")
    assert not widgets.errors, widgets.errors


def test_explorer_model_menu_shows_the_chosen_model(widgets):
    cell, obj = widgets.cell("menu_explorer.show()"), "menu_explorer"
    values = widgets.kernel.values(obj)
    assert values["model"] == "pairwise", values
    shown = widgets.wait_for_figure(cell, widgets.kernel.drawn(obj, values)["figure"], "the model explorer at first")
    widgets.choose(cell, "model", "patchwise")
    drawn = _check_change(widgets, cell, obj, {"model": "patchwise"}, shown, "explorer, model patchwise")
    assert drawn["figure"]["titles"][1:] == ["patchwise\ngroup 0", "patchwise\ngroup 1"], drawn["figure"]["titles"]
    assert not widgets.errors, widgets.errors


def test_explorer_facet_menus_pick_the_trained_variant(widgets):
    """Menus changed one after the other show the variant closest_variant picks, beside the
    reference, and the other menus follow it (as test_browser.py checks on the published page)."""
    cell, obj = widgets.cell("facet_explorer.show()"), "facet_explorer"
    keys = list(next(iter(FACETS.values())))

    def menus():
        return {key: widgets.control(cell, "dropdown", key).locator("select").input_value() for key in keys}

    values = widgets.kernel.values(obj)
    assert set(keys) | {""} <= set(values), f"the faceted explorer's live controls: {values}"
    first = next(iter(FACETS))
    assert values[""] == first and menus() == FACETS[first], (values, menus())
    shown = widgets.wait_for_figure(cell, widgets.kernel.drawn(obj, values)["figure"], "the faceted explorer at first")

    # Every variant is reached; at 5 x 5 and at the last step the other menus follow the variant.
    steps = [("position encoding", "off", "summation, no position"), ("footprint", "5 x 5", "subtraction, 5 x 5"),
             ("footprint", "7 x 7", "subtraction + position"), ("relation", "summation", "summation + position"),
             ("position encoding", "off", "summation, no position"), ("relation", "subtraction", "subtraction + position")]
    for key, value, variant in steps:
        assert closest_variant(FACETS, {**menus(), key: value}, key) == variant
        widgets.choose(cell, key, value)
        drawn = _check_change(widgets, cell, obj, {"": variant, **FACETS[variant]}, shown,
                              f"faceted explorer, {key} = {value}")
        shown = drawn["png"]
        assert drawn["figure"]["titles"][1:] == [f"{variant}\ngroup 0", f"{variant}\ngroup 1",
                                                 "convolution\ngroup 0", "convolution\ngroup 1"]
        _until(lambda: menus() == FACETS[variant],
               lambda: f"after {key} = {value} the menus show {menus()}, not {variant}'s {FACETS[variant]}")
    assert not widgets.errors, widgets.errors


def test_playground_says_when_the_footprint_does_not_fit(widgets):
    """On an image of 6 x 6 pixels, K = 9 does not fit without padding enough, and reflection padding
    needs less padding than the image's side: the live output says so, as the page's playground does."""
    cell, obj = widgets.cell("tiny.show()"), "tiny"
    text = cell.locator(".widget-output .jp-OutputArea-output")
    shown = widgets.wait_for_figure(cell, widgets.kernel.drawn(obj, widgets.kernel.values(obj))["figure"],
                                    "the small playground at first")
    fits = output_size(TINY, 9, 1, 6, 1)
    for name, value, message in [
            ("K", 9, f"the footprint does not fit: output {output_size(TINY, 9, 1, 1, 1)} x {output_size(TINY, 9, 1, 1, 1)}"),
            ("padding", 6, None),
            ("mode", "reflect", "reflection padding needs padding < the image's height and width")]:
        widgets.choose(cell, name, value)
        if message is None:                   # K = 9 with padding 6 fits: a figure again
            drawn = _check_change(widgets, cell, obj, {name: value}, shown, f"small playground, {name} = {value}")
            assert drawn["figure"]["titles"][0] == f"output {fits} x {fits}; pixel (0, 0)", drawn["figure"]["titles"]
            continue
        values = widgets.values(obj, {name: value})
        assert widgets.kernel.drawn(obj, values)["text"] == [message]
        _until(lambda: text.count() == 1 and text.inner_text().strip() == message,
               lambda: f"after {name} = {value} the playground shows {text.all_inner_texts()}, not {message!r}")
    assert not widgets.errors, widgets.errors
