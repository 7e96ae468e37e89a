"""``python -m sanmini.experiments``: run (or continue) the sweep of :mod:`sanmini.experiments`."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import sweep
from .plan import ENTRIES, EXPERIMENTS

DEFAULT_OUT = Path("book/results/experiments.csv")


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sanmini.experiments", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the CSV (default {DEFAULT_OUT}); "
                        "rows already there are kept and not recomputed")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1 (default 5)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, metavar="EXPERIMENT",
                        help=f"only these experiments, of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch and Numba threads per process (default 1)")
    parser.add_argument("--list", action="store_true", help="print what is left to compute, and stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("seeds", "jobs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    entries = [e for e in ENTRIES if args.only is None or e.experiment in args.only]
    seeds = range(args.seeds)
    if args.list:
        todo, copies = sweep.pending(args.out, entries, seeds)
        for unit in todo:
            print(f"seed {unit.seed}: " + " + ".join(c.key for c in unit.configs))
        print(f"{len(todo)} units to compute, {len(copies)} rows to copy into {args.out}")
        return 0
    start = time.perf_counter()
    computed = sweep.run(args.out, entries, seeds, jobs=args.jobs, threads=args.threads,
                         progress=not args.no_progress)
    print(f"{computed} units computed in {time.perf_counter() - start:.0f} s; rows in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
