"""The sweep of sanmini.experiments under faults: a unit that raises, two writers of one CSV, a CSV
it cannot read whole, rows of another plan, a bad output path, a sweep killed with -9. Every unit
here is a stand-in of tests/sweep_standins.py: no network trains."""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import sweep_standins as standins
from sanmini.experiments import ENTRIES, Config, Task, plan, sweep, task
from sanmini.experiments.__main__ import cli

FOOTPRINT = [e for e in ENTRIES if e.experiment == "footprint"]          # 3 (the default), 5, 7
GAMMA = [e for e in ENTRIES if e.experiment == "gamma_depth"]            # 1, 2 (the default), 3


def never(unit, *args):
    raise AssertionError(f"{unit.name} was computed")


def keys(rows) -> set:
    return {(r["experiment"], r["variant"], int(r["seed"])) for r in rows}


@pytest.mark.slow
def test_a_failed_unit_in_a_pool_loses_no_other_unit(tmp_path):
    # Two processes; the 7 x 7 unit fails at once while the others take 0.3 s each, so that most of
    # them complete after the failure (the sweep used to stop reading results at the first error).
    out = tmp_path / "e.csv"
    entries = FOOTPRINT + GAMMA
    with pytest.raises(sweep.UnitsFailed) as failed:
        sweep.run(out, entries, [0], jobs=2, progress=False, compute=standins.failing_on_seven)
    (unit, error), = failed.value.failures
    assert unit.configs[0].kwargs["kernels"] == standins.SEVEN and isinstance(error, RuntimeError)
    assert failed.value.computed == 4
    assert "1 of 5 units failed, their rows are not recorded (a rerun computes them): seed 0: " \
        "san10_pairwise kernels=(7, 7, 7, 3, 3): RuntimeError: a stand-in unit that fails" \
        in str(failed.value) and "\n" not in str(failed.value)
    everything = {(e.experiment, e.variant, 0) for e in entries}
    assert keys(sweep.read_rows(out)) == everything - {("footprint", "7", 0)}
    # A rerun computes the failed unit only.
    assert sweep.run(out, entries, [0], progress=False, compute=standins.quick) == 1
    assert keys(sweep.read_rows(out)) == everything


def test_the_cli_names_the_failed_units_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    out = tmp_path / "e.csv"

    def stand_in(unit, threads, task, attacks, views):
        kernels = unit.configs[0].kwargs["kernels"]
        if kernels == standins.SEVEN:
            raise RuntimeError("out of patience")
        metrics = standins.metrics(unit, views)
        if kernels[0] == 5:                       # a metric the CSV could not hold: not recorded
            metrics[unit.configs[0]]["top1_upright"] = "high"
        return metrics

    monkeypatch.setattr(sweep, "run_unit", stand_in)
    assert cli(["--plan", "first", "--out", str(out), "--only", "footprint", "--seeds", "1", "--jobs", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    summary = err[err.index("2 units failed"):].splitlines()
    assert summary == ["2 units failed, not recorded (a rerun computes them):",
                       "  seed 0: san10_pairwise kernels=(5, 5, 5, 3, 3): ValueError: san10_pairwise "
                       "kernels=(5, 5, 5, 3, 3): metrics ['top1_upright'] are not numbers",
                       "  seed 0: san10_pairwise kernels=(7, 7, 7, 3, 3): RuntimeError: out of patience"]
    assert "Traceback" in err and "out of patience" in err     # the traceback of each, above
    assert keys(sweep.read_rows(out)) == {("footprint", "3", 0)}
    # The part is recorded beside the CSV; a second part adds a line.
    monkeypatch.setattr(sweep, "run_unit", standins.quick)
    assert cli(["--plan", "first", "--out", str(out), "--only", "footprint", "--seeds", "1", "--jobs", "1", "--no-progress"]) == 0
    import csv
    with open(tmp_path / "e.parts.csv") as f:
        parts = list(csv.DictReader(f))
    assert [(p["units_computed"], p["units_failed"], p["ended"], p["only"]) for p in parts] == \
        [("1", "2", "failed", "footprint"), ("2", "0", "done", "footprint")]
    assert all(p["machine"] == sweep.machine() and p["commit"] == sweep.commit() and float(p["minutes"]) >= 0
               for p in parts)


def test_each_plan_records_into_its_own_file_by_default():
    from sanmini.experiments.__main__ import DEFAULT_OUT
    assert DEFAULT_OUT == {"fair": Path("book/results/experiments.csv"), "first": Path("book/results/digits-first-sweep.csv")}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")                 # a zombie has ended


@contextlib.contextmanager
def _sweep_with_two_sleeping_workers(tmp_path, script: str, **popen):
    """A real sweep in a subprocess (``script`` gets the CSV's path as ``sys.argv[1]``), its two
    workers on stand-in units that sleep 2 minutes: yields (process, worker pids) once both
    workers run; kills whatever is left afterwards."""
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "SWEEP_STANDIN_PIDS": str(pids),            # the modules this process imports
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    sweeping = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "e.csv")], env=env, **popen)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and sweeping.poll() is None:
            time.sleep(0.1)
            workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, f"the workers did not start (sweep exit status {sweeping.poll()})"
        yield sweeping, workers
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _all_end(workers: list[int], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(map(_alive, workers))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_the_workers_end_with_a_sweep_killed_with_sigkill(tmp_path):
    out = tmp_path / "e.csv"
    script = ("import sys, sweep_standins; from sanmini.experiments import ENTRIES, sweep; "
              "sweep.run(sys.argv[1], [e for e in ENTRIES if e.experiment == 'footprint'], [0], jobs=2, "
              "progress=False, compute=sweep_standins.sleeping)")
    with _sweep_with_two_sleeping_workers(tmp_path, script) as (sweeping, workers):
        os.kill(sweeping.pid, signal.SIGKILL)
        sweeping.wait(10)
        assert _all_end(workers), "workers outlived their sweep"
    # The killed sweep's lock went with it: the next sweep records everything.
    assert sweep.run(out, FOOTPRINT, [0], progress=False, compute=standins.quick) == 3


def test_a_second_sweep_on_the_same_csv_is_refused_and_the_first_loses_nothing(tmp_path):
    out = tmp_path / "e.csv"
    started, release, computed = threading.Event(), threading.Event(), []

    def held(unit, *args):
        started.set()
        release.wait(10)
        return standins.quick(unit, *args)

    first = threading.Thread(target=lambda: computed.append(
        sweep.run(out, FOOTPRINT, [0], progress=False, compute=held)))
    first.start()
    try:
        assert started.wait(10)
        with pytest.raises(sweep.SweepLocked, match=re.escape(f"another sweep is writing {out} "
                                                               f"(process {os.getpid()} holds {out}.lock)")):
            sweep.run(out, GAMMA, [0], progress=False, compute=never)
    finally:
        release.set()
        first.join(10)
    assert computed == [3]
    assert keys(sweep.read_rows(out)) == {("footprint", v, 0) for v in "357"}
    assert not (tmp_path / "e.csv.lock").exists()
    # The lock is flock on <csv>.lock: a holder other than a sweep is respected too.
    with open(tmp_path / "e.csv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(sweep.SweepLocked):
            sweep.run(out, GAMMA, [0], progress=False, compute=never)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert sweep.run(out, GAMMA, [0], progress=False, compute=standins.quick) == 2      # 2 is copied


def test_each_writer_has_its_own_temporary_file(tmp_path, monkeypatch):
    # A second write_rows while the first is renaming its file into place (two writers with no
    # lock): each renames its own temporary file; before, the second took the first's away.
    out = tmp_path / "e.csv"
    rows = [dict(zip(sweep.FIELDS, ["footprint", "3", "SAN10 pairwise", "0", "parameters", "1",
                                    plan.ENTRIES[0].config.key, "abc", "m", "2026-01-02"]))]
    other = [{**rows[0], "value": "2"}]
    replace, sources = os.replace, []

    def interleaved(source, target):
        sources.append(Path(source).name)
        if len(sources) == 1:
            sweep.write_rows(out, other)
        replace(source, target)

    monkeypatch.setattr(os, "replace", interleaved)
    sweep.write_rows(out, rows)
    assert len(set(sources)) == 2 and all(s.startswith("e.csv.") and s.endswith(".partial") for s in sources)
    assert sweep.read_rows(out) == rows and not list(tmp_path.glob("*.partial"))


def _good_csv(path: Path) -> list[str]:
    sweep.run(path, FOOTPRINT, [0], progress=False, compute=standins.quick)
    return path.read_text().splitlines(keepends=True)


def _columns(lines, name, last: bool):
    """``lines`` of a CSV without the column ``name``, or with it moved last."""
    rows = list(csv.reader(lines))
    k = rows[0].index(name)
    rows = [r[:k] + r[k + 1:] + ([r[k]] if last else []) for r in rows]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().splitlines(keepends=True)


BAD = {   # what was done to a good CSV: (the new lines, the error)
    "an older layout without date": (lambda ls: _columns(ls, "date", last=False),
                                     r"line 1: the columns are not the sweep's \(missing \['date'\], unknown \[\]"),
    "no header line": (lambda ls: ls[1:], "line 1: no header line"),
    "a byte-order mark": (lambda ls: ["\ufeff" + ls[0]] + ls[1:], "line 1: the file starts with a byte-order mark"),
    "a renamed column": (lambda ls: [ls[0].replace("metric", "measure")] + ls[1:],
                         r"line 1: .*missing \['metric'\], unknown \['measure'\]"),
    "a value that is not a number": (lambda ls: ls[:2] + [ls[2].replace(",5000,", ",n/a,")] + ls[3:],
                                     "line 3: value 'n/a' is not a number"),
    "an extra field": (lambda ls: ls[:3] + [ls[3].rstrip("\n") + ",x\n"] + ls[4:],
                       r"line 4: 11 fields, the header has 10: \['x'\] past the last column"),
    "a seed that is not a number": (lambda ls: ls[:4] + [ls[4].replace(",0,", ",zero,", 1)] + ls[5:],
                                    "line 5: seed 'zero' is not a whole number >= 0"),
    "a line cut short before the last": (lambda ls: ls[:2] + [ls[2][:ls[2].index('"')] + "\n"] + ls[3:],
                                         "line 3: 7 fields, the header has 10"),
    "an empty field": (lambda ls: ls[:5] + [ls[5][:-len("YYYY-MM-DD\n")] + "\n"] + ls[6:],
                       "line 6: empty date"),
    "two values of one measurement": (lambda ls: ls + [ls[1].replace(",1000,", ",999,")],
                                      "lines 2 and 14: two different measurements of footprint 3 SAN10 "
                                      r"pairwise seed 0 parameters \(1000 and 999\)"),
}


@pytest.mark.parametrize("fault", BAD)
def test_a_csv_the_sweep_cannot_read_whole_is_refused_and_kept(tmp_path, monkeypatch, capsys, fault):
    out = tmp_path / "e.csv"
    lines = _good_csv(out)
    assert len(lines) == 13 and lines[1].startswith("footprint,3,SAN10 pairwise,0,parameters,1000,")
    change, message = BAD[fault]
    out.write_text("".join(change(lines)))
    before = out.read_bytes()
    with pytest.raises(sweep.CSVError, match=f"^{re.escape(str(out))} {message}") as error:
        sweep.run(out, FOOTPRINT + GAMMA, [0, 1], progress=False, compute=never)
    assert "\n" not in str(error.value)
    # The command line says it in one line, computes nothing and leaves the file as it was.
    monkeypatch.setattr(sweep, "run_unit", never)
    assert cli(["--plan", "first", "--out", str(out), "--only", "gamma_depth", "--seeds", "1", "--jobs", "1", "--no-progress"]) == 2
    assert cli(["--plan", "first", "--out", str(out), "--list"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"python -m sanmini.experiments: error: {error.value}"] * 2
    assert out.read_bytes() == before


def test_what_a_csv_may_have_and_still_be_read(tmp_path):
    out = tmp_path / "e.csv"
    lines = _good_csv(out)
    rows = sweep.read_rows(out)
    # A row repeated whole, a blank line, columns in another order, CRLF line ends, and a last line
    # cut short (a sweep killed while writing, before writes were atomic), which is left out.
    out.write_text("".join(lines + [lines[5], "\n"]))
    assert sweep.read_rows(out) == rows
    out.write_text("".join(_columns(lines, "experiment", last=True)).replace("\n", "\r\n"))
    assert sweep.read_rows(out) == rows
    out.write_text("".join(lines)[:-30])
    assert sweep.read_rows(out) == rows[:-1]
    out.write_text("")
    assert sweep.read_rows(out) == []


def test_rows_of_another_config_are_reported_and_computed_again(tmp_path, capsys):
    out = tmp_path / "e.csv"
    entries = FOOTPRINT + [e for e in GAMMA if e.variant == "2"]        # "2" is "3": the default network
    assert sweep.run(out, entries, [0], progress=False, compute=standins.quick) == 3
    narrow = Config.of(plan.PAIRWISE, width=8)
    spaced = json.dumps(json.loads(FOOTPRINT[1].config.key), indent=1).replace("\n", "")
    rows = sweep.read_rows(out)
    for r in rows:
        if r["variant"] in ("3", "2"):
            r["config"] = narrow.key                  # measured under another plan
        elif r["variant"] == "5":
            r["config"] = spaced                      # the same network, written with other spaces
    sweep.write_rows(out, rows)
    assert [(e.variant, seed, recorded) for e, seed, recorded in sweep.stale(out, entries, [0])] == \
        [("3", 0, narrow.key), ("2", 0, narrow.key)]
    todo, copies = sweep.pending(out, entries, [0])
    assert [u.configs for u in todo] == [(plan.Config.of(plan.PAIRWISE),)] and copies == []
    assert cli(["--plan", "first", "--out", str(out), "--only", "gamma_depth", "--seeds", "1", "--list"]) == 0
    printed = capsys.readouterr().out
    assert "1 measurements in" in printed and "gamma_depth 2 SAN10 pairwise seed 0: recorded" in printed
    assert sweep.run(out, entries, [0], progress=False, compute=standins.quick) == 1
    assert sweep.stale(out, entries, [0]) == [] and sweep.pending(out, entries, [0]) == ([], [])
    after = sweep.read_rows(out)
    assert {r["config"] for r in after if r["variant"] in ("3", "2")} == {Config.of(plan.PAIRWISE).key}
    assert [r for r in after if r["variant"] == "5"] == [r for r in rows if r["variant"] == "5"]   # kept


def _unwritable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    for folder in (Path("/sys"), Path("/proc")):     # as root: a file system nobody writes in
        try:
            os.close(os.open(folder / "sanmini-probe", os.O_WRONLY | os.O_CREAT))
        except OSError:
            return folder
    pytest.skip("no folder this user cannot write in")


@pytest.mark.parametrize("case", ["a directory", "a file as its folder", "a folder it cannot write in"])
def test_a_bad_output_path_is_refused_before_any_unit(tmp_path, monkeypatch, capsys, case):
    if case == "a directory":
        out, message = tmp_path, f"cannot record the sweep in {tmp_path}: it is a directory, not a CSV file"
    elif case == "a file as its folder":
        (tmp_path / "notes.txt").write_text("")
        out = tmp_path / "notes.txt" / "results" / "e.csv"
        message = f"cannot record the sweep in {out}: {tmp_path / 'notes.txt'} is a file, not a folder"
    else:
        out = _unwritable_folder(tmp_path) / "e.csv"
        message = f"cannot record the sweep in {out}: cannot create e.csv.lock in its folder"
    with pytest.raises(sweep.CSVError, match="^" + re.escape(message)):
        sweep.run(out, FOOTPRINT, [0], progress=False, compute=never)
    monkeypatch.setattr(sweep, "run_unit", never)
    assert cli(["--plan", "first", "--out", str(out), "--only", "footprint", "--seeds", "1", "--jobs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m sanmini.experiments: error: {message}") and err.count("\n") == 1


def test_jobs_and_threads_are_checked():
    with pytest.raises(ValueError, match="jobs must be an int of at least 1, got 0"):
        sweep.run("unused.csv", FOOTPRINT, [0], jobs=0, compute=never)
    with pytest.raises(ValueError, match="threads must be an int of at least 1, got 1.5"):
        sweep.run("unused.csv", FOOTPRINT, [0], threads=1.5, compute=never)


def test_fit_reports_the_last_epochs_loss_and_top1():
    # With a step size of 0 the network never changes: the last epoch's loss and top-1 are those
    # of the untrained network on every training image, whatever the batches. The loss is the
    # reference smoothing (1 - eps on the target, eps / (K - 1) on each other class), by hand.
    torch.manual_seed(0)
    images, labels = torch.randn(10, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = task.fit(model, images, labels, seed=0, task=Task(epochs=2, batch_size=4, lr=0.0))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    logp = torch.log_softmax(model(images), 1).detach()
    eps = 0.1
    target = torch.full_like(logp, eps / 2).scatter_(1, labels[:, None], 1 - eps)
    assert out["train_loss"] == pytest.approx(float(-(target * logp).sum(1).mean()), rel=1e-6)
    assert out["train_top1"] == pytest.approx(100.0 * float((logp.argmax(1) == labels).float().mean()))
    assert out["train_seconds"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_sigterm_ends_a_part_records_it_and_ends_the_workers(tmp_path):
    # The CLI, SIGTERMed as `kill` does (a sweep started in the background with & ignores Ctrl-C).
    script = ("import sys, sweep_standins; from sanmini.experiments import sweep; "
              "sweep.run_unit = sweep_standins.sleeping; from sanmini.experiments.__main__ import cli; "
              "sys.exit(cli(['--plan', 'first', '--out', sys.argv[1], '--only', 'footprint', '--seeds', '1', "
              "'--jobs', '2', '--no-progress']))")
    with _sweep_with_two_sleeping_workers(tmp_path, script, stderr=subprocess.PIPE, text=True) as (sweeping, workers):
        sweeping.send_signal(signal.SIGTERM)
        assert sweeping.wait(30) == 130
        assert "interrupted; 0 units recorded" in sweeping.stderr.read()
        assert _all_end(workers), "workers outlived their sweep"
    with open(tmp_path / "e.parts.csv") as f:
        parts = list(csv.DictReader(f))
    assert [(p["units_computed"], p["ended"]) for p in parts] == [("0", "interrupted")]
