"""Headless Chromium for the repository's browser tests (tests/test_browser.py, the built site;
tests/test_jupyter_live.py, JupyterLab): where Debian's chromium is, how to get it, and a browser
launched with the flags that keep it off the network (this machine has none)."""
import contextlib
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOW = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver, as root), as .ci/run does"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def require():
    """Skip the calling test module where Chromium or Playwright is missing; Playwright's sync API."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no headless Chromium at {CHROMIUM}: {HOW}", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is part of requirements.lock: run make setup")


@contextlib.contextmanager
def launched(playwright):
    """A headless Chromium browser of Playwright's sync API ``playwright``, closed afterwards."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
