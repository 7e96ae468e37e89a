"""The API page's docstrings build without a warning: the reStructuredText blocks of book/api.md
are built alone by Sphinx with the book's autodoc settings and warnings as errors, as `make book`
does (-W -n), in seconds instead of at the end of the whole book's build."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _rst_blocks(markdown: str) -> list[str]:
    return re.findall(r"```\{eval-rst\}\n(.*?)```", markdown, flags=re.S)


def test_api_page_docstrings_build_without_warnings(tmp_path):
    blocks = _rst_blocks((ROOT / "book" / "api.md").read_text())
    assert len(blocks) >= 5, "book/api.md has lost its eval-rst blocks"
    sphinx = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    keys = ("autodoc_inherit_docstrings", "autodoc_member_order", "autodoc_typehints",
            "napoleon_use_rtype", "nitpick_ignore_regex")
    config = {k: sphinx["config"][k] for k in keys}
    config["nitpick_ignore_regex"] = [tuple(r) for r in config["nitpick_ignore_regex"]]
    (tmp_path / "conf.py").write_text(
        f"extensions = {sphinx['extra_extensions']!r}\n"
        + "".join(f"{k} = {v!r}\n" for k, v in config.items()))
    (tmp_path / "index.rst").write_text("API\n===\n\n" + "\n\n".join(blocks))
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "dummy", "-W", "-n", "--keep-going", "-q",
         str(tmp_path), str(tmp_path / "_out")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600)
    assert run.returncode == 0, f"the API page's docstrings warn:\n{run.stderr[-4000:]}"
