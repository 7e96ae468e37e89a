"""Publishing: the GitHub Actions workflow that builds and deploys the book is valid, and sanmini
builds as a wheel that installs into a clean virtual environment with only its declared
dependencies."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
BIN = Path(sys.executable).parent


def _validate(path):
    """GitHub's workflow schema, as vendored in check-jsonschema (no network needed)."""
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


def test_workflow_is_valid():
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_invalid_workflow_is_caught(tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["build"]["runs-on"]
    broken["on"] = broken.pop(True, broken.get("on"))            # YAML reads the key `on` as True
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert _validate(tmp_path / "broken.yml").returncode != 0


def test_workflow_builds_with_make_book_and_deploys_main_only():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow[True]                                          # the key `on`
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert "make book" in runs
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy["steps"])


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv(tmp_path):
    """python -m build, then pip install of the wheel into a fresh venv (no --system-site-packages),
    then sanmini's operators and a model run there. requirements.lock only pins versions (-c), so
    that pip's cache serves torch; it adds no package the wheel does not declare. --no-compile
    skips byte-compiling torch's thousands of modules (a minute), which the one import here does
    not need."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, text=True)
    wheel = next(dist.glob("sanmini-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_ENABLE_CUDASIM")}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", str(wheel), "-c",
                              str(ROOT / "requirements.lock")], capture_output=True, text=True, env=env)
    assert install.returncode == 0, install.stderr[-3000:]
    check = ("import torch, sanmini, sanmini.ops.cpu\n"
             "assert sanmini.__file__.startswith(%r)\n"
             "x = torch.randn(1, 4, 6, 6)\n"
             "y = sanmini.ops.aggregation(x, torch.rand(1, 2, 9, 36), 3, padding=1, backend='cpu')\n"
             "assert y.shape == (1, 4, 6, 6)\n"
             "assert sum(p.numel() for p in sanmini.create('san10_pairwise').parameters()) == 10531848\n"
             "print('ok')\n") % str(venv)
    run = subprocess.run([str(python), "-c", check], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, env=env).stdout.lower()
    for extra in ("jupyter-book", "matplotlib", "torchvision", "pytest"):
        assert f"{extra}==" not in listed, f"{extra} is not a dependency of sanmini, yet it was installed"
