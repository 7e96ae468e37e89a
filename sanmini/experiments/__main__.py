"""``python -m sanmini.experiments``: run (or continue) the sweep of :mod:`sanmini.experiments`.

By default the fair sweep (:data:`sanmini.experiments.plan.FAIR`: textures, networks as the
paper built them, tuned step sizes, 8/5/3 seeds), recorded in ``book/results/experiments.csv``;
``--plan first`` the first sweep (5 seeds of the digits), kept in
``book/results/digits-first-sweep.csv``. ``--list`` prints what is left,
``--estimate`` also times one training step of every network (on this machine, now) and prints
the estimated seconds of every unit left and their sum, to plan a run in parts (``--only``).

Exit status: 0 when every unit is recorded; 1 when some units failed (every other one is
recorded, the failed ones are named at the end and a rerun computes them); 2 when the sweep
cannot start (a CSV it cannot read whole or a place it cannot write, said in one line naming the
file, or another sweep writing the same CSV); 130 when it was interrupted (Ctrl-C or SIGTERM:
the units recorded stay recorded, the part is recorded as interrupted).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from . import plan, sweep
from .plan import ENTRIES, EXPERIMENTS, FAIR, FAIR_ATTACKS, FAIR_EXPERIMENTS, FAIR_SEEDS, STEP_SIZE

DEFAULT_OUT = {"fair": Path("book/results/experiments.csv"), "first": Path("book/results/digits-first-sweep.csv")}
"""Where each plan records by default: the fair sweep, which chapter 5b reads, and the first one,
kept for the record (chapter 5b says why its verdicts were withdrawn)."""
PART_FIELDS = ["started", "minutes", "units_computed", "units_failed", "ended", "jobs", "threads", "only",
               "machine", "commit"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (``kill``, a scheduler's stop) ends a part as Ctrl-C does: the workers are ended and
    the part is recorded. (A sweep started in the background with ``&`` ignores Ctrl-C.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parts_path(out: Path) -> Path:
    """The record of the parts a sweep into ``out`` ran in: ``<out stem>.parts.csv`` beside it."""
    return out.with_name(out.stem + ".parts.csv")


def record_part(out: Path, started: datetime.datetime, seconds: float, computed: int, failed: int, ended: str,
                args, commit: str) -> None:
    """Add one line to :func:`parts_path`: when this part started (UTC), its minutes, the units it
    computed and those that failed, how it ended (``done``, ``failed``, ``interrupted``), its
    jobs, threads and ``--only``, and the machine and the commit it started at (``commit``, as the
    sweep's rows record it; the checkout may move on while a part runs)."""
    path = parts_path(out)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PART_FIELDS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({"started": started.isoformat(timespec="seconds"), "minutes": f"{seconds / 60:.1f}",
                         "units_computed": computed, "units_failed": failed, "ended": ended, "jobs": args.jobs,
                         "threads": args.threads, "only": " ".join(args.only or ["all"]),
                         "machine": sweep.machine(), "commit": commit})


def _report_stale(out: Path, entries, seeds) -> None:
    stale = sweep.stale(out, entries, seeds)
    if stale:
        print(f"{len(stale)} measurements in {out} were recorded under another config than the plan's; "
              "they are computed again and their rows replaced:")
        for entry, seed, recorded in stale:
            print(f"  {entry.experiment} {entry.variant} {entry.label} seed {seed}: recorded {recorded}, "
                  f"the plan's {entry.config.key}")


def _selected(args):
    """(entries, seeds, attacks) of the plan and experiments asked for. The tuning runs of every
    network selected come along (their step sizes are chosen before they train)."""
    if args.plan == "first":
        entries = [e for e in ENTRIES if args.only is None or e.experiment in args.only]
        return entries, range(args.seeds or 5), sweep.ATTACKS
    networks = [e for e in FAIR if e.experiment != STEP_SIZE and (args.only is None or e.experiment in args.only)]
    wanted = {sweep.tuned_as(e.config, FAIR) for e in networks}
    tuning = [e for e in FAIR if e.experiment == STEP_SIZE and e.config.network in wanted]
    seeds = dict(FAIR_SEEDS) if args.seeds is None else {x: range(args.seeds) for x in FAIR_SEEDS}
    seeds[STEP_SIZE] = FAIR_SEEDS[STEP_SIZE]
    return networks + tuning, seeds, FAIR_ATTACKS


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sanmini.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the CSV (default {DEFAULT_OUT['fair']} for the fair plan, {DEFAULT_OUT['first']} for "
                        "the first); rows already there are kept and not recomputed. Each part of the sweep run "
                        "into it is recorded in <out stem>.parts.csv beside it")
    parser.add_argument("--plan", choices=("fair", "first"), default="fair",
                        help="fair: the fair sweep (default); first: the first sweep, on digits")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0 .. SEEDS-1 for every experiment (default: the plan's, 8/5/3 for fair, 5 for first)")
    parser.add_argument("--only", nargs="+", choices=sorted(set(EXPERIMENTS) | set(FAIR_EXPERIMENTS)),
                        metavar="EXPERIMENT", help=f"only these experiments, of {', '.join(FAIR_EXPERIMENTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch and Numba threads per process (default 1)")
    parser.add_argument("--list", action="store_true", help="print what is left to compute, and stop")
    parser.add_argument("--estimate", action="store_true",
                        help="print what is left with an estimate of each unit's seconds (one timed step per network), and stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("seeds", "jobs", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    args.out = DEFAULT_OUT[args.plan] if args.out is None else args.out
    entries, seeds, attacks = _selected(args)
    try:
        if not (args.list or args.estimate):
            sweep.check_out(args.out)
        _report_stale(args.out, entries, seeds)
        if args.list or args.estimate:
            todo, copies = sweep.pending(args.out, entries, seeds, attacks)
            if args.estimate:
                from .estimate import estimate, report

                print(report(estimate(todo, attacks=attacks, threads=args.threads), jobs=args.jobs))
            else:
                for unit in todo:
                    print(unit.name)
            print(f"{len(todo)} units to compute, {len(copies)} rows to copy into {args.out}")
            return 0
        start, started = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
        at = sweep.commit()
        left = len(sweep.pending(args.out, entries, seeds, attacks)[0])
        try:
            with _sigterm_interrupts():
                computed = sweep.run(args.out, entries, seeds, jobs=args.jobs, threads=args.threads,
                                     progress=not args.no_progress, attacks=attacks)
        except sweep.UnitsFailed as failed:
            record_part(args.out, started, time.perf_counter() - start, failed.computed, len(failed.failures),
                        "failed", args, at)
            raise
        except KeyboardInterrupt:                  # Ctrl-C or SIGTERM: the units recorded stay recorded
            now_left = len(sweep.pending(args.out, entries, seeds, attacks)[0])
            record_part(args.out, started, time.perf_counter() - start, left - now_left, 0, "interrupted", args, at)
            print(f"python -m sanmini.experiments: interrupted; {left - now_left} units recorded in {args.out}, "
                  f"{now_left} left (a rerun computes them)", file=sys.stderr)
            return 130
        record_part(args.out, started, time.perf_counter() - start, computed, 0, "done", args, at)
    except sweep.UnitsFailed as failed:
        for unit, error in failed.failures:
            print(f"\n{unit.name} failed:", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)
        print(f"\n{failed.computed} units computed in {time.perf_counter() - start:.0f} s; rows in {args.out}",
              file=sys.stderr)
        print(f"{len(failed.failures)} units failed, not recorded (a rerun computes them):", file=sys.stderr)
        for line in failed.lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    except sweep.SweepError as error:
        print(f"python -m sanmini.experiments: error: {error}", file=sys.stderr)
        return 2
    print(f"{computed} units computed in {time.perf_counter() - start:.0f} s; rows in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
