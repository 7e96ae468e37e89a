"""The chapters' asserts on learned quantities against their recorded margins (book/_claims/).

The measurements themselves take about an hour (``python book/_claims/measure.py``); these tests
check what was recorded: that each asserted bar is the one the chapter asserts, that every variant
the project promises (5 seeds; 1 and 2 threads; oneDNN on and off; torch's generic kernels) was
run for every claim, that every recorded run clears every bar, and that RESULTS.md is the table of
runs.csv.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

CLAIMS_DIR = Path(__file__).resolve().parents[1] / "book" / "_claims"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, CLAIMS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


claims = _load("claims")
measure = _load("measure")


def _code(chapter: str) -> str:
    nb = json.loads((CLAIMS_DIR.parent / f"{chapter}.ipynb").read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("claim", [c for c in claims.CLAIMS if c.asserted], ids=lambda c: c.name)
def test_the_chapter_asserts_the_recorded_bar(claim):
    assert claim.assert_line() in _code(claim.chapter), f"{claim.chapter} does not contain {claim.assert_line()!r}"


def test_claim_names_are_unique_and_ops_known():
    names = [c.name for c in claims.CLAIMS]
    assert len(names) == len(set(names))
    assert all((c.op in (">", "<")) == c.asserted for c in claims.CLAIMS)


def test_the_variants_cover_seeds_threads_onednn_and_generic_kernels():
    variants = measure.VARIANTS
    assert len({v.seed for v in variants}) >= 5
    assert {1, 2} <= {v.threads for v in variants}
    assert {"on", "off"} <= {v.onednn for v in variants}
    assert "default" in {v.capability for v in variants}
    assert len({v.name for v in variants}) == len(variants)


def test_every_variant_ran_every_claim_and_clears_every_bar():
    rows = measure.recorded()
    value = {(r["variant"], r["chapter"], r["claim"]): r["value"] for r in rows}
    failures = []
    for variant in measure.VARIANTS:
        for claim in claims.CLAIMS:
            got = value.get((variant.name, claim.chapter, claim.name))
            if got in (None, ""):
                failures.append(f"{variant.name}: {claim.chapter} {claim.name!r} not recorded")
            elif claim.asserted and not claim.holds(float(got)):
                failures.append(f"{variant.name}: {claim.chapter} {claim.name!r} = {got} does not clear "
                                f"{claim.op} {claim.bar:g}")
            elif not math.isfinite(float(got)):
                failures.append(f"{variant.name}: {claim.chapter} {claim.name!r} = {got}")
    assert not failures, "\n".join(failures)


def test_results_md_is_the_table_of_runs_csv():
    assert measure.RESULTS.read_text() == measure.render(measure.recorded()), \
        "run python book/_claims/measure.py --render"


def test_render_marks_a_run_below_its_bar():
    claim = next(c for c in claims.CLAIMS if c.asserted and c.op == ">")
    low = {"variant": "v", "chapter": claim.chapter, "claim": claim.name, "value": repr(claim.bar - 1),
           "date": "d", "commit": "c", "machine": "m"}
    line = next(row for row in measure.render([low]).splitlines() if f"| {claim.name} |" in row)
    assert line.endswith("| **no** |")
