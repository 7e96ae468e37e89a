"""The versions sanmini declares: what keeps the oldest working, and the record of the sessions
that ran the library's tests on the oldest and the newest versions (noxfile.py, VERSIONS.md)."""
import ast
import re
import tomllib
from pathlib import Path

import sanmini

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(sanmini.__file__).parent


def test_custom_operators_are_declared_with_type_hints_torch_24_can_read():
    """torch 2.4's custom_op reads the operator's type hints as objects; `from __future__ import
    annotations` makes them strings, and `import sanmini` fails (ValueError: infer_schema)."""
    declaring = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if "custom_op" not in {getattr(n, "attr", getattr(n, "id", None)) for n in ast.walk(tree)}:
            continue
        declaring.append(path.relative_to(PACKAGE).as_posix())
        postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                        and any(a.name == "annotations" for a in n.names) for n in tree.body)
        assert not postponed, f"sanmini/{declaring[-1]} declares custom operators under postponed annotations"
    assert {"ops/functional.py", "ops/fused.py"} <= set(declaring)


def test_every_requirement_has_a_lower_bound_the_oldest_session_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values()
                                              for r in extra if not r.startswith("sanmini[")]
    unbounded = [r for r in requirements if not re.search(r">=\s*[\w.]+", r)]
    assert not unbounded, f"no lower bound for the oldest session to pin: {unbounded}"


# Which extra each part of the package needs: what its modules import must be declared there
# (or by an extra it names, or by sanmini itself). `python -m sanmini.train` and
# `python -m sanmini.data`: train; `python -m sanmini.experiments`: experiments; the chapters'
# widgets and figures: book; sanmini.ops.ptx's assembler (cuda.core): the CUDA extras.
PARTS = {"data": "train", "train": "train", "experiments": "experiments", "viz": "book",
         "ops/ptx.py": "cuda12"}
# cuda.core comes with numba-cuda, which the CUDA extras name (with the toolkit that matches).
BROUGHT_BY = {"cuda-core": "numba-cuda", "cuda-bindings": "numba-cuda", "cuda-pathfinder": "numba-cuda"}


def _imports(tree):
    """Top-level names of the modules a file imports, except those it guards with
    `except ImportError` (a fallback, e.g. tomli before Python 3.11)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {id(n) for h in node.handlers for n in ast.walk(h)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared(extra, project):
    requirements = list(project["dependencies"])
    todo, seen = [extra] if extra else [], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for r in project["optional-dependencies"][name]:
            inner = re.fullmatch(r"sanmini\[([\w,\s-]+)\]", r)
            if inner:
                todo += [e.strip() for e in inner.group(1).split(",")]
            else:
                requirements.append(r)
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_each_extra_declares_what_its_part_of_the_package_imports():
    import importlib.metadata
    import sys
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        extra = next((e for part, e in PARTS.items() if relative == part or relative.startswith(part + "/")),
                     None)
        declared = _declared(extra, project)
        for name in _imports(ast.parse(path.read_text())) - set(sys.stdlib_module_names) - {"sanmini"}:
            dists = [d.lower() for d in distributions.get(name, [name])]
            if not any(d in declared or BROUGHT_BY.get(d) in declared for d in dists):
                missing.append(f"sanmini/{relative} imports {name} ({', '.join(dists)}), "
                               f"not declared for {extra or 'sanmini itself'}")
    assert not missing, "\n".join(missing)
