"""Rerun the chapters that assert learned quantities under the conditions a reader's machine may
bring, and record every claim of ``claims.py`` in ``runs.csv`` and ``RESULTS.md``.

    python book/_claims/measure.py            # every variant not yet in runs.csv (resumable)
    python book/_claims/measure.py --jobs 2   # two one-thread runs at a time
    python book/_claims/measure.py --render   # only rewrite RESULTS.md from runs.csv

A variant is a seed (``SANMINI_SEED``, read by each chapter), a thread count (torch's and Numba's),
oneDNN as the chapter sets it or forced on or off for the whole run, and torch's CPU kernels
(``ATEN_CPU_CAPABILITY=default``: the generic kernels, which round like a CPU with other vector
instructions). Each variant runs the chapters top to bottom in a fresh kernel with a fresh model
cache, so every model is trained under that variant. A failing assert does not stop the run: the
values are recorded, and RESULTS.md shows which runs clear which bar. Not part of ``make test``
(about 6 minutes a variant on one core); ``tests/test_claims.py`` checks the recorded table.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from claims import CLAIMS  # noqa: E402

RUNS = HERE / "runs.csv"
RESULTS = HERE / "RESULTS.md"
CHAPTERS = sorted({claim.chapter for claim in CLAIMS})
FIELDS = ["variant", "chapter", "claim", "value", "date", "commit", "machine"]


@dataclass(frozen=True)
class Variant:
    seed: int = 0
    threads: int = 1
    onednn: str = "chapter"        # "chapter": as the chapter sets it; "on" / "off": forced
    capability: str = "native"     # "native" or "default" (ATEN_CPU_CAPABILITY)

    @property
    def name(self) -> str:
        return f"seed{self.seed}-t{self.threads}-onednn_{self.onednn}-{self.capability}"


VARIANTS = ([Variant(seed=s) for s in range(5)]
            + [Variant(threads=2), Variant(onednn="on"), Variant(onednn="off"), Variant(capability="default"),
               Variant(seed=1, threads=2), Variant(seed=1, capability="default"),
               Variant(seed=2, threads=2, capability="default"),
               Variant(seed=5, threads=2), Variant(threads=2, capability="default")])


def machine() -> str:
    """CPU model, its vector instructions as torch sees them, cores."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.__version__)"
    capability, version = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                         check=True).stdout.split()
    return f"{model} ({capability.upper()}), {os.cpu_count()} cores, torch {version}"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "book", "sanmini"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def _setup_cell(variant: Variant) -> str:
    """Code run first in the kernel: oneDNN forced for the whole run, if the variant says so."""
    if variant.onednn == "chapter":
        return "pass"
    enabled = variant.onednn == "on"
    return ("import torch\n"
            f"torch.backends.mkldnn.enabled = {enabled}\n"
            "type(torch.backends.mkldnn).__dict__['enabled'].setter = lambda value: None   # stays forced\n")


def _readout_cell(chapter: str) -> str:
    """Code run last: every claim of ``chapter`` as JSON (None where it could not be computed)."""
    exprs = {c.name: c.expr for c in CLAIMS if c.chapter == chapter}
    return ("import json as _json\n_values = {}\n"
            f"for _name, _expr in {exprs!r}.items():\n"
            "    try:\n        _values[_name] = float(eval(_expr))\n"
            "    except Exception:\n        _values[_name] = None\n"
            "print('CLAIMS=' + _json.dumps(_values))\n")


def run_chapter(chapter: str, variant: Variant, cache: Path) -> dict:
    """Execute ``book/CHAPTER.ipynb`` under ``variant``; the claims' values."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_setup_cell(variant)))
    nb.cells.append(nbformat.v4.new_code_cell(_readout_cell(chapter)))
    env = {"SANMINI_SEED": str(variant.seed), "OMP_NUM_THREADS": str(variant.threads),
           "NUMBA_NUM_THREADS": str(variant.threads), "MKL_NUM_THREADS": str(variant.threads),
           "SANMINI_CACHE": str(cache), "SANMINI_STATIC_HTML": "1", "MPLBACKEND": "Agg"}
    if variant.capability != "native":
        env["ATEN_CPU_CAPABILITY"] = variant.capability
    client = NotebookClient(nb, timeout=1800, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "book")}})
    client.execute(env={**os.environ, **env})      # the kernel's environment
    for cell in nb.cells:                          # a failed assert is data; say which cell raised
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                print(f"  {chapter} under {variant.name}: {output['ename']}: {output['evalue'][:300]}",
                      f"in a cell starting {cell.source[:60]!r}", flush=True)
    for output in nb.cells[-1].outputs:
        for line in output.get("text", "").splitlines():
            if line.startswith("CLAIMS="):
                return json.loads(line[len("CLAIMS="):])
    raise RuntimeError(f"{chapter} under {variant.name} printed no claims: {nb.cells[-1].outputs}")


def recorded() -> list[dict]:
    if not RUNS.exists():
        return []
    with open(RUNS, newline="") as f:
        return list(csv.DictReader(f))


def append(rows: list[dict]) -> None:
    new = not RUNS.exists()
    with open(RUNS, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def measure_variant(variant: Variant, done: set, stamp: dict) -> None:
    with tempfile.TemporaryDirectory(prefix=f"sanmini-claims-{variant.name}-") as cache:
        for chapter in CHAPTERS:
            if (variant.name, chapter) in done:
                continue
            start = time.perf_counter()
            values = run_chapter(chapter, variant, Path(cache))
            rows = [{"variant": variant.name, "chapter": chapter, "claim": name,
                     "value": "" if value is None else repr(value), **stamp} for name, value in values.items()]
            append(rows)
            print(f"{variant.name:36} {chapter:14} {time.perf_counter() - start:6.0f}s", flush=True)


def render(rows: list[dict]) -> str:
    """RESULTS.md: per claim, its bar and every recorded run's value."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    value = {(r["variant"], r["chapter"], r["claim"]): r["value"] for r in rows}
    stamps = sorted({(r["date"], r["commit"], r["machine"]) for r in rows})
    out = ["# The chapters' learned claims, measured across seeds and machines' arithmetic", "",
           "Written by `python book/_claims/measure.py` from `runs.csv`; claims in `claims.py`. "
           "Variant names: `seedS-tT-onednn_X-K` is seed S, T torch and Numba threads, oneDNN as the "
           "chapter sets it (`chapter`) or forced `on`/`off` for the whole run, and torch's CPU kernels "
           "(`native`, or `default`: `ATEN_CPU_CAPABILITY=default`, the generic kernels).", "",
           "Runs:", ""]
    out += [f"- {date}, commit {c}, {m}" for date, c, m in stamps]
    out += ["", "| chapter | claim | assert | min | max | every run clears the bar |",
            "|---|---|---|---:|---:|---|"]
    for claim in CLAIMS:
        got = [value.get((v, claim.chapter, claim.name), "") for v in variants]
        numbers = [float(g) for g in got if g != ""]
        missing = sum(1 for g in got if g == "")
        bar = f"{claim.op} {claim.bar:g}" if claim.asserted else "observation"
        clears = ("yes" if all(claim.holds(x) for x in numbers) and not missing else "**no**") if claim.asserted else ""
        low, high = (f"{min(numbers):.3f}", f"{max(numbers):.3f}") if numbers else ("", "")
        out.append(f"| {claim.chapter} | {claim.name} | {bar} | {low} | {high} | {clears} |")
    out += ["", "Every run:", "", "| claim | " + " | ".join(variants) + " |",
            "|---|" + "---:|" * len(variants)]
    for claim in CLAIMS:
        cells = []
        for v in variants:
            g = value.get((v, claim.chapter, claim.name), "")
            cells.append("" if g == "" else f"{float(g):.3f}")
        out.append(f"| {claim.chapter}: {claim.name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1, help="one-thread variants run at a time (default 1)")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from runs.csv")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = parser.parse_args(argv)
    if not args.render:
        done = {(r["variant"], r["chapter"]) for r in recorded()}
        stamp = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine()}
        todo = [v for v in VARIANTS if args.only is None or v.name in args.only]
        single = [v for v in todo if v.threads == 1]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:      # one-thread runs side by side
            list(pool.map(lambda v: measure_variant(v, done, stamp), single))
        for v in todo:
            if v.threads > 1:                                    # several threads: alone
                measure_variant(v, done, stamp)
    RESULTS.write_text(render(recorded()))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
