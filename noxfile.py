"""The library's tests on the oldest and the newest versions of what sanmini declares.

    nox -s oldest     # every lower bound of pyproject.toml, pinned (torch==2.4, numpy==1.24, ...)
    nox -s newest     # whatever pip resolves today, on the newest Python sanmini supports

Each session installs sanmini with the extras the library's tests import (``train``,
``experiments``, ``book``, and ``cuda12`` for the compiler and assembler the PTX tests use; the
``"cuda"`` backend's tests run in Numba's CUDA simulator), runs the library's tests (every test file but ``REPOSITORY_TESTS``) on one
thread, and records the versions it ran with and the counts of passed, failed and skipped tests,
with the date, in VERSIONS.md (the session's row is replaced). A session that fails still records
its row, then fails. ``.github/workflows/tests.yml`` runs both sessions; ``make test`` runs
neither (each installs torch afresh: minutes and gigabytes).
"""
import datetime
import json
import platform
import re
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nox
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RECORD = ROOT / "VERSIONS.md"

# The repository's own tests: they read the book, the site, the README, the workflows and the
# benchmarks' record, and need the docs and browser tools. Not shipped in the sdist (MANIFEST.in
# excludes the same files; tests/test_versions.py checks both lists agree).
REPOSITORY_TESTS = ("test_api_docs.py", "test_book.py", "test_browser.py", "test_claims.py",
                    "test_figure_text.py", "test_jupyter_live.py", "test_publish.py", "test_readme.py",
                    "test_reference.py")
# What the library's tests import beyond sanmini's own dependencies: the extras named here.
EXTRAS = ("train", "experiments", "book", "cuda12")
# The newest torch is built for CUDA 13 (it requires cuda-bindings 13), and numba-cuda's cu12 extra
# requires cuda-bindings 12: with the cuda12 extra pip settles on the last torch built for CUDA 12
# (2.10 on 2026-12-06). The newest session takes the cuda13 extra, as requirements.lock does.
NEWEST_EXTRAS = ("train", "experiments", "book", "cuda13")
TEST_TOOLS = ("pytest>=8",)
# The packages whose versions a session's row shows.
SHOWN = ("torch", "torchvision", "numpy", "numba", "numba-cuda", "einops", "pillow", "scipy", "scikit-learn",
         "scikit-image", "pyyaml", "tqdm", "matplotlib")
PYTHONS = {"oldest": "3.11", "newest": "3.13"}

nox.options.sessions = ["oldest", "newest"]
nox.options.default_venv_backend = "venv"


def declared(extras=EXTRAS) -> list[str]:
    """sanmini's requirements and those of ``extras``, self-references (``sanmini[train]``)
    followed, each package once."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    found, todo = list(PYPROJECT["project"]["dependencies"]), list(extras)
    seen = set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            inner = re.fullmatch(r"sanmini\[([\w,\s-]+)\]", requirement)
            if inner:
                todo += [e.strip() for e in inner.group(1).split(",")]
            else:
                found.append(requirement)
    # One requirement per package: where two name the same package (numpy>=1.24, and
    # numpy>=1.24,<2.5 in the CUDA extras), their version specifiers are joined.
    unique = {}
    for requirement in map(Requirement, found):
        if requirement.name.lower() in unique:
            unique[requirement.name.lower()].specifier &= requirement.specifier
        else:
            unique[requirement.name.lower()] = requirement
    return [str(r) for r in unique.values()]


def _head(requirement: str) -> str:
    """The package's name and extras at the start of a requirement."""
    return re.match(r"[\w.-]+(\[[\w,\s-]+\])?", requirement).group(0)


def lower_bounds(requirements) -> list[str]:
    """``name>=X`` -> ``name==X`` (extras kept), for every requirement; one without a lower bound
    is refused, since the oldest session could not say what it tested."""
    pins = []
    for requirement in requirements:
        bound = re.search(r">=\s*([\w.]+)", requirement)
        if not bound:
            raise ValueError(f"{requirement!r} declares no lower bound (name>=version) to pin")
        head = _head(requirement)
        pins.append(f"{head}=={bound.group(1)}")
    return pins


def _library_tests(session: nox.Session, name: str) -> None:
    session.install("--no-deps", "--no-build-isolation", ".")
    report = Path(session.create_tmp()) / "junit.xml"
    env = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "NUMBA_CACHE_DIR": str(Path(session.create_tmp()) / "numba-cache")}
    ignored = [f"--ignore=tests/{name}" for name in REPOSITORY_TESTS]
    # -P: sanmini is imported from the session's site-packages, not from the working tree
    session.run("python", "-P", "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}", *ignored, *session.posargs, env=env, success_codes=[0, 1])
    freeze = session.run("python", "-m", "pip", "list", "--format=json", silent=True)
    versions = {p["name"].lower(): p["version"] for p in json.loads(freeze[freeze.index("["):])}
    python = session.run("python", "-c", "import platform; print(platform.python_version())",
                         silent=True).strip()
    counts = _counts(report)
    _record(name, python, versions, counts)
    if counts["failed"]:            # pytest's status 1 (tests failed) was let through to record the row
        session.error(f"{counts['failed']} tests failed on the {name} versions (recorded in VERSIONS.md)")


def _counts(report: Path) -> dict:
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    return {"passed": total - skipped - failed, "failed": failed, "skipped": skipped}


def _record(name: str, python: str, versions: dict, counts: dict) -> None:
    """Replace the session's row of VERSIONS.md's table."""
    header = ("| session | date | Python | " + " | ".join(SHOWN) + " | passed | failed | skipped |\n"
              "|" + "---|" * (len(SHOWN) + 6) + "\n")
    row = (f"| {name} | {datetime.date.today().isoformat()} | {python} | "
           + " | ".join(versions.get(p, "-") for p in SHOWN)
           + f" | {counts['passed']} | {counts['failed']} | {counts['skipped']} |\n")
    text = RECORD.read_text() if RECORD.exists() else ""
    rows = [line + "\n" for line in text.splitlines() if line.startswith(("| oldest ", "| newest "))
            and not line.startswith(f"| {name} ")]
    rows = sorted(rows + [row], key=lambda line: line.split("|")[1].strip() != "oldest")
    intro = text.split("| session |")[0] if text else (
        "# The versions the library's tests ran on\n\n"
        "Written by `nox -s oldest newest` (noxfile.py): the oldest session pins every lower bound "
        "of pyproject.toml, the newest installs what pip resolves that day. On "
        f"{platform.system()} {platform.machine()}, CPU only (the CUDA tests in Numba's simulator).\n\n")
    RECORD.write_text(intro + header + "".join(rows))


@nox.session(python=PYTHONS["oldest"])
def oldest(session: nox.Session) -> None:
    """Every lower bound that pyproject.toml declares, pinned."""
    session.install(*lower_bounds(declared()), *TEST_TOOLS, "setuptools>=77")
    _library_tests(session, "oldest")


@nox.session(python=PYTHONS["newest"])
def newest(session: nox.Session) -> None:
    """What pip resolves today from pyproject.toml's ranges."""
    session.install(*declared(NEWEST_EXTRAS), *TEST_TOOLS, "setuptools>=77")
    _library_tests(session, "newest")
