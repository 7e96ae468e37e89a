"""Publishing: the GitHub Actions workflows (the book, the tests, the release) are valid and do
what they say; sanmini builds as a wheel that installs into a clean virtual environment with only
its declared dependencies; the sdist and the wheel pass `twine check`, carry an SPDX licence, the
LICENSE file and py.typed, and the sdist's own tests run against the installed sdist."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
TESTS_WORKFLOW = ROOT / ".github" / "workflows" / "tests.yml"
RELEASE_WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
BIN = Path(sys.executable).parent


def _validate(path):
    """GitHub's workflow schema, as vendored in check-jsonschema (no network needed)."""
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("path", [WORKFLOW, TESTS_WORKFLOW, RELEASE_WORKFLOW], ids=lambda p: p.name)
def test_workflow_is_valid(path):
    result = _validate(path)
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


def _noxfile_constant(name):
    """A constant of noxfile.py, read without importing nox."""
    import ast
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py has no {name}")


def repository_tests():
    return _noxfile_constant("REPOSITORY_TESTS")


def test_tests_workflow_runs_both_nox_sessions_as_a_matrix():
    flow = yaml.safe_load(TESTS_WORKFLOW.read_text())
    assert {"push", "pull_request", "schedule"} <= set(flow[True])
    job = flow["jobs"]["versions"]
    matrix = {row["session"]: row["python"] for row in job["strategy"]["matrix"]["include"]}
    assert matrix == _noxfile_constant("PYTHONS")                    # oldest and newest, same Pythons
    assert job["strategy"]["fail-fast"] is False
    runs = [step.get("run", "") for step in job["steps"]]
    assert "nox -s ${{ matrix.session }}" in runs
    assert not any("make test" in run for run in runs)


def test_tests_workflow_runs_the_colab_check_on_colabs_python():
    """The Colab install cell's path (`make colab-check`, which downloads torch afresh) is a job of
    its own, not part of `make test`, and its fresh environment has Colab's Python."""
    flow = yaml.safe_load(TESTS_WORKFLOW.read_text())
    job = flow["jobs"]["colab-check"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make colab-check COLAB_PYTHON=python3.12" in runs
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert "3.12" in str(python["with"]["python-version"]).split()
    assert not any("make test" in run for run in runs)
    assert "colab-check" not in (ROOT / ".ci" / "run").read_text()


def test_tests_workflow_drives_the_live_widgets_in_jupyterlab():
    """The live widgets in JupyterLab (`make live-check`) are a job of their own, not `make test`'s."""
    flow = yaml.safe_load(TESTS_WORKFLOW.read_text())
    runs = [step.get("run", "") for step in flow["jobs"]["live-check"]["steps"]]
    assert "make live-check" in runs and any("chromium" in run for run in runs)
    makefile = (ROOT / "Makefile").read_text()
    assert "tests/test_jupyter_live.py" in makefile.split("live-check: setup", 1)[1].split("\n\n", 1)[0]
    test_target = makefile.split("\ntest: setup", 1)[1].split("\n\n", 1)[0]
    assert "test_jupyter_live" not in test_target.replace("--ignore=tests/test_jupyter_live.py", "")


def test_release_workflow_builds_checks_and_publishes_a_tag_with_trusted_publishing():
    flow = yaml.safe_load(RELEASE_WORKFLOW.read_text())
    assert flow[True] == {"push": {"tags": ["v*"]}}
    build, publish = flow["jobs"]["build"], flow["jobs"]["publish"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in runs and "twine check --strict dist/*" in runs
    assert "${GITHUB_REF_NAME#v}" in runs                             # the tag is the version
    assert publish["needs"] == "build" and publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}            # OIDC, no stored token
    upload = [s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish")]
    assert len(upload) == 1 and "password" not in upload[0].get("with", {})
    assert flow["permissions"] == {"contents": "read"}


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv(dists, tmp_path):
    """python -m build (the `dists` fixture), then pip install of the wheel into a fresh venv (no --system-site-packages),
    then sanmini's operators and a model run there. requirements.lock only pins versions (-c), so
    that pip's cache serves torch; it adds no package the wheel does not declare. --no-compile
    skips byte-compiling torch's thousands of modules (a minute), which the one import here does
    not need."""
    wheel = dists[1]
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


# --- the release: sdist and wheel, their metadata, the sdist's tests ------------------------------

@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """python -m build: the sdist, and the wheel built from it (as PyPI's users get them)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(out.glob("sanmini-*.tar.gz")), next(out.glob("sanmini-*.whl"))


def _sdist_names(sdist):
    import tarfile
    with tarfile.open(sdist) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


@pytest.mark.slow
def test_twine_check_passes_and_the_metadata_is_a_maintainers(dists):
    import email
    import zipfile

    import sanmini
    check = subprocess.run([str(BIN / "twine"), "check", "--strict", *map(str, dists)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    sdist, wheel = dists
    assert wheel.name == f"sanmini-{sanmini.__version__}-py3-none-any.whl"     # the version's one place
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        meta = email.message_from_bytes(whl.read(f"sanmini-{sanmini.__version__}.dist-info/METADATA"))
    assert meta["License-Expression"] == "MIT" and "License" not in meta             # SPDX, PEP 639
    assert f"sanmini-{sanmini.__version__}.dist-info/licenses/LICENSE" in names
    assert "sanmini/py.typed" in names
    assert not any(name.startswith("tests/") for name in names)
    extras = set(meta.get_all("Provides-Extra"))
    assert {"train", "experiments", "book", "cuda12", "cuda13", "test"} <= extras


@pytest.mark.slow
def test_the_sdist_holds_the_library_tests_and_what_they_read(dists):
    names = _sdist_names(dists[0])
    assert {"LICENSE", "README.md", "pyproject.toml", "sanmini/py.typed", "tests/conftest.py",
            "tests/loops.py", "tests/ddp_probe.py", "book/results/experiments.csv",
            "book/results/digits-first-sweep.csv"} <= names
    assert {f"tests/data/{p.name}" for p in (ROOT / "tests" / "data").iterdir()} <= names
    library = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
               if p.name not in repository_tests()}
    shipped = {name for name in names if re.fullmatch(r"tests/test_\w+\.py", name)}
    assert shipped == library, "MANIFEST.in and noxfile.REPOSITORY_TESTS disagree"
    # A library test may read the recorded sweep and nothing else of the book: the sdist has no more.
    reaches = {name for name in library
               if re.search(r"""["']book["']\s*/\s*["'](?!results)|book/(?!results)\w""",
                            (ROOT / name).read_text())}
    assert not reaches, f"these read the book but are shipped as library tests: {sorted(reaches)}"


@pytest.mark.slow
def test_the_sdist_installs_and_its_tests_run(dists, tmp_path):
    """pip install of the sdist (built into a wheel by pip, as a user's pip does), then the sdist's
    own tests, from its unpacked folder, against the installed package: every test module is
    collected (each imports what it needs: conftest, loops, ddp_probe, data) and two files run."""
    import tarfile
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_ENABLE_CUDASIM")}
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                              "--target", str(target), str(dists[0])], capture_output=True, text=True,
                             env=env)
    assert install.returncode == 0, install.stderr[-3000:]
    with tarfile.open(dists[0]) as tar:
        tar.extractall(tmp_path, filter="data")
    unpacked = next(tmp_path.glob("sanmini-*/"))
    # -P: not the unpacked sources (the current folder) but the installed package, first on the path
    env = {**env, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-P", "-c", "import sanmini; print(sanmini.__file__)"],
                           capture_output=True, text=True, env=env, cwd=unpacked)
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    collect = subprocess.run([sys.executable, "-P", "-m", "pytest", "tests", "--collect-only", "-q",
                              "-p", "no:cacheprovider"], capture_output=True, text=True, env=env, cwd=unpacked)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-3000:]
    assert re.search(r"^\d{3,} tests collected", collect.stdout, re.M), collect.stdout[-500:]
    run = subprocess.run([sys.executable, "-P", "-m", "pytest", "tests/test_ops_errors.py",
                          "tests/test_models.py", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, env=env, cwd=unpacked)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
