"""The sweep: every entry of :mod:`.plan` at every seed, resumable, one CSV row per measurement.

A *unit* is what is computed at once: one network at one seed, or, for the comparison, its three
networks at one seed (the attacks run on the validation digits that all three classify
correctly, so they need all three). Once a unit is done its rows are added to the CSV, which is
rewritten whole into a temporary file of this writer's own and renamed into place; a killed sweep
loses at most the units in progress, and a rerun computes only the units whose rows are missing,
incomplete or recorded under another config than the plan's (those rows are replaced). Rows of
an entry whose Config was already measured at that seed (an ablation's default variant) are
copied, not recomputed.

Columns: ``experiment, variant, model, seed, metric, value, config, commit, machine, date``.

What the sweep refuses, before it computes anything, each in one line (``SweepError``):

- a CSV it cannot read whole (another layout, a byte-order mark, a renamed column, a value that
  is not a number, an extra field, two different values of one measurement): ``CSVError``,
  naming the file and the line; the sweep never writes over a file it cannot read back;
- a path it cannot write (a directory, a file where its folder should be, a folder it may not
  write in): ``CSVError``;
- a CSV that another sweep is writing: ``SweepLocked``. A sweep holds an exclusive
  ``fcntl.flock`` on ``<csv>.lock`` from start to end (POSIX systems such as Linux; not Windows).

A unit that raises does not stop the sweep: every other unit is computed and recorded as it
completes, and :func:`run` then raises ``UnitsFailed``, naming the failed units. The worker
processes of a sweep with several jobs end when the sweep's process ends, killed or not.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import datetime
import functools
import io
import json
import numbers
import os
import platform
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .plan import ATTACKS, ENTRIES, FAIR_VIEWED, STEP_SIZE, VIEWED, Config, Entry
from .task import TASK, TEXTURES, VIEWS, Task, fit, load, load_tuning, predict, view_accuracies

TASKS = {"": TASK, "textures": TEXTURES}
"""The task of each value of ``plan.Config.task``."""


def task_of(config: Config, task=None) -> Task:
    """The task ``config`` trains on: ``task`` if it is a :class:`.task.Task` (every config then
    trains on it: a smaller task in tests), ``task[config.task]`` if it is a mapping, else the
    registered :data:`TASKS` entry; for a run trained for other epochs (``config.epochs``), that
    task with its ``epochs``."""
    if not isinstance(task, Task):
        tasks = TASKS if task is None else {**TASKS, **task}
        if config.task not in tasks:
            raise ValueError(f"no task {config.task!r} (config {config.name}); known: {sorted(tasks)}")
        task = tasks[config.task]
    return config.run_task(task)


def _viewed(config_or_entry) -> tuple:
    """The experiments whose networks are measured on every view of their task."""
    config = getattr(config_or_entry, "config", config_or_entry)
    return FAIR_VIEWED if config.task else VIEWED

FIELDS = ["experiment", "variant", "model", "seed", "metric", "value", "config", "commit", "machine", "date"]
COMPARISON = "comparison"


@dataclass(frozen=True)
class Unit:
    """Configs trained together at one seed (several only for the comparison)."""
    configs: tuple
    seed: int

    @property
    def attacked(self) -> bool:
        return len(self.configs) > 1

    @property
    def name(self) -> str:
        """The unit as the sweep's messages name it, for example
        ``seed 0: san10_pairwise kernels=(7, 7, 7, 3, 3)``."""
        return f"seed {self.seed}: " + " + ".join(config.name for config in self.configs)


def seeds_of(seeds, experiment: str) -> list[int]:
    """The seeds of ``experiment``: ``seeds`` itself (an iterable of ints, for every experiment), or
    ``seeds[experiment]`` (a mapping {experiment: iterable of ints}, e.g. :data:`.plan.FAIR_SEEDS`)."""
    if isinstance(seeds, dict):
        if experiment not in seeds:
            raise ValueError(f"seeds has no entry for experiment {experiment!r}: {sorted(seeds)}")
        return list(seeds[experiment])
    return list(seeds)


def _all_seeds(entries, seeds) -> list[int]:
    return sorted({s for e in entries for s in seeds_of(seeds, e.experiment)})


def units(entries, seeds) -> list[Unit]:
    """The units that cover ``entries`` (Entry objects) at ``seeds`` (ints, or {experiment: ints}):
    tuning runs first (experiment :data:`.plan.STEP_SIZE`: the networks' step sizes are chosen from
    them), then at each seed the comparison's configs together and every other config alone, each
    config once per seed."""
    entries, out = list(entries), []
    comparison = tuple(dict.fromkeys(e.config for e in entries if e.experiment == COMPARISON))
    others = tuple(dict.fromkeys(e.config for e in entries if e.config not in comparison))
    others = tuple(c for c in others if c.tune_lr is not None) + tuple(c for c in others if c.tune_lr is None)
    wanted = {}
    for e in entries:
        wanted.setdefault(e.config, set()).update(seeds_of(seeds, e.experiment))
    for tuning in (True, False):
        for seed in _all_seeds(entries, seeds):
            if comparison and not tuning and seed in wanted[comparison[0]]:
                out.append(Unit(comparison, seed))
            out += [Unit((config,), seed) for config in others
                    if (config.tune_lr is not None) == tuning and seed in wanted[config]]
    return out


def machine() -> str:
    """CPU model, torch's vector instructions, cores, torch version."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, torch {torch.__version__}"


def commit() -> str:
    """The sanmini checkout's short commit, ``+changes`` if sanmini/ has uncommitted changes;
    ``unknown`` outside a git checkout (an installed package)."""
    here = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sanmini"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def measure_network(config: Config, seed: int, data, task: Task = TASK,
                    views: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train ``config`` at ``seed`` on the task and measure it: parameters, multiply-adds at the
    task's image size, training seconds, the last epoch's training loss and top-1 (see
    :func:`.task.fit`; every epoch's for a run trained for other epochs than its task's,
    ``config.epochs``, whose ``task`` is then :func:`task_of`'s), top-1 on the upright validation images and, with ``views``, on every view
    of ``task.views`` (and per class of ``task.per_class_views``). A task that chooses step sizes
    (``task.lr_grid``) trains at the one chosen for ``config`` (``task.lr_of``) and records it as
    ``lr``; a task that redraws its training set records the seed it was drawn from as
    ``subset_seed``.

    A tuning run (``config.tune_lr`` set) trains on the tuning split of the training pool at that
    step size and is measured on its holdout split (:func:`.task.load_tuning`; ``data`` is then
    that pair): ``holdout_top1`` and ``holdout_loss`` (cross-entropy, not smoothed)."""
    from ..models import count_flops
    from ..train import seed_everything

    (train_x, train_y), (val_x, val_y) = data
    task = config.run_task(task)
    seed_everything(seed)
    model = config.build(task.num_classes)
    metrics = {"parameters": sum(p.numel() for p in model.parameters()),
               "multiply_adds": count_flops(model, (1, 3, task.image_size, task.image_size))}
    lr = config.tune_lr if config.tune_lr is not None else task.lr_of(config.key)
    metrics.update(fit(model, train_x, train_y, seed, task, lr=lr, curve=config.epochs is not None))
    if task.lr_grid or config.tune_lr is not None:
        metrics["lr"] = lr
    if config.tune_lr is not None:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in val_x.split(120)])
        metrics["holdout_top1"] = 100.0 * float((logits.argmax(1) == val_y).float().mean())
        metrics["holdout_loss"] = float(torch.nn.functional.cross_entropy(logits, val_y))
        return model, metrics
    if task.redraw:
        metrics["subset_seed"] = seed
    names = [v for v in task.views] if views else ["upright"]
    metrics.update(view_accuracies(model, val_x, val_y, names, task.per_class_views if views else ()))
    return model, metrics


def attack(models: dict, seed: int, data, attacks: dict = ATTACKS, pixels=None) -> dict:
    """FGSM and PGD success rates (%) of every model in ``models`` ({config: network}) at each
    ``attacks["eps"]``, on the first ``attacks["images"]`` validation images that every model
    classifies correctly.

    PGD takes ``attacks["pgd_steps"]`` steps from a random start, ``attacks.get("pgd_restarts",
    1)`` times, success counted at any iterate (:func:`sanmini.robustness.pgd`). Both attacks are
    reported cumulatively over the grid: the success at ``eps`` counts an image fooled at any
    budget of the grid up to ``eps`` (a perturbation within a smaller budget is within ``eps``
    too; a single FGSM step can overshoot at a larger budget and miss what a smaller one found),
    so that a recorded success never falls as ``eps`` grows. Only the images not yet fooled are
    attacked at the next budget (the count is the same, the work less).

    ``pixels``: the validation images (N, 3, s, s) in [0, 1] at the data's own resolution, for a
    network that sees them upsampled to the task's size S (``data``'s images): the attack then
    perturbs these s x s pixels, each within ``eps``, and the network sees the perturbation
    upsampled as it sees the image (:class:`sanmini.robustness.Upsampled`). Default: ``data``'s
    validation images, un-normalised (the attack acts on what the network sees).
    """
    from ..data import IMAGENET_MEAN, IMAGENET_STD
    from ..robustness import Normalized, Upsampled, fgsm, pgd

    _, (val_x, val_y) = data
    if pixels is None:
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pixels = (val_x * std + mean).clamp(0, 1)                  # (N, 3, S, S) back in [0, 1]
    elif pixels.shape[0] != val_x.shape[0]:
        raise ValueError(f"pixels must hold the {val_x.shape[0]} validation images, got shape {tuple(pixels.shape)}")
    correct = torch.stack([predict(m, val_x) == val_y for m in models.values()]).all(0)
    chosen = correct.nonzero()[:attacks["images"], 0]
    x, y = pixels[chosen], val_y[chosen]
    size = tuple(val_x.shape[-2:])
    out = {}
    for config, model in models.items():
        attacked = Normalized(model, IMAGENET_MEAN, IMAGENET_STD)
        if tuple(x.shape[-2:]) != size:
            attacked = Upsampled(attacked, size)
        rates = {"attacked_images": len(chosen), "pgd_steps": attacks["pgd_steps"],
                 "pgd_restarts": attacks.get("pgd_restarts", 1)}
        fooled = {"fgsm": torch.zeros(len(chosen), dtype=torch.bool), "pgd": torch.zeros(len(chosen), dtype=torch.bool)}
        for e in sorted(attacks["eps"]) if len(chosen) else ():   # no success rate of no images
            generator = torch.Generator().manual_seed(seed)
            for name in ("fgsm", "pgd"):
                left = (~fooled[name]).nonzero()[:, 0]       # an image fooled at a smaller budget stays fooled
                if len(left):
                    images = (fgsm(attacked, x[left], y[left], e) if name == "fgsm" else
                              pgd(attacked, x[left], y[left], e, steps=attacks["pgd_steps"],
                                  restarts=attacks.get("pgd_restarts", 1), generator=generator))
                    fooled[name][left] = predict(attacked, images) != y[left]
                rates[f"{name}_success_eps{e:g}"] = 100.0 * float(fooled[name].float().mean())
        out[config] = rates
    return out


def run_unit(unit: Unit, threads: int = 1, task=None, attacks: dict = ATTACKS,
             views: bool = True) -> dict:
    """Compute one unit: {config: {metric: value}}, on ``threads`` torch and Numba threads. Every
    view of the task is measured for the comparison and with ``views``, else only upright.
    ``task``: see :func:`task_of` (the first sweep's :data:`.task.TASK` for its configs)."""
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    models, metrics, loaded = {}, {}, {}
    for config in unit.configs:
        setup = task_of(config, task)
        tuning = config.tune_lr is not None
        if (setup, tuning) not in loaded:
            loaded[setup, tuning] = (load_tuning(setup) if tuning else
                                     load(setup, seed=unit.seed if setup.redraw else None))
        models[config], metrics[config] = measure_network(config, unit.seed, loaded[setup, tuning], setup,
                                                          views or unit.attacked)
    if unit.attacked:
        data = loaded[task_of(unit.configs[0], task), False]
        for config, rates in attack(models, unit.seed, data, attacks).items():
            metrics[config].update(rates)
    return metrics


class SweepError(Exception):
    """A problem of the sweep said in one line (``python -m sanmini.experiments`` prints it
    without a traceback)."""


class CSVError(SweepError, ValueError):
    """The sweep's CSV cannot be read whole, or cannot be written where it was asked to be."""


class SweepLocked(SweepError, RuntimeError):
    """Another sweep is writing the CSV."""


class UnitsFailed(SweepError, RuntimeError):
    """Units that raised: ``failures`` is [(Unit, exception)] in the sweep's order; every other
    unit was computed and recorded (``computed`` of them)."""

    def __init__(self, failures: list, computed: int):
        self.failures, self.computed = failures, computed
        self.lines = [f"{unit.name}: {_one_line(error)}" for unit, error in failures]   # one per unit
        super().__init__(f"{len(failures)} of {len(failures) + computed} units failed, their rows are "
                         f"not recorded (a rerun computes them): {'; '.join(self.lines)}")


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return type(error).__name__ + (f": {lines[0]}" if lines else "")


@functools.lru_cache(maxsize=None)
def _canonical(config: str) -> str:
    """A ``config`` cell as the plan writes it (sorted keys, the same spacing), to compare two."""
    return json.dumps(json.loads(config), sort_keys=True)


def _problem(row: dict) -> str | None:
    """What is wrong with one row of the CSV (a dict of FIELDS), or None."""
    empty = [name for name in FIELDS if not row[name].strip()]
    if empty:
        return f"empty {', '.join(empty)}"
    if not re.fullmatch("[0-9]+", row["seed"]):
        return f"seed {row['seed']!r} is not a whole number >= 0"
    try:
        float(row["value"])
    except ValueError:
        return f"value {row['value']!r} is not a number"
    try:
        config = json.loads(row["config"])
    except ValueError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        return f"config {row['config']!r} is not a network as JSON ({{\"model\": ..., overrides}})"
    try:
        datetime.date.fromisoformat(row["date"])
    except ValueError:
        return f"date {row['date']!r} is not YYYY-MM-DD"
    return None


def read_rows(path) -> list[dict]:
    """The rows of the sweep's CSV at ``path``, each a dict of the columns (strings); [] if there
    is no file, or an empty one.

    The file must be the sweep's, whole: UTF-8 without a byte-order mark, a header line with
    every column of the sweep once (in any order), then rows of as many fields, each with a
    whole-number seed, a numeric value, a config of JSON and a date. Only the last line may be cut
    short (left by a sweep killed while writing, before writes were atomic): when the file does
    not end with a newline and that line is not a whole row, it is left out. A row repeated with
    the same value and config is read once. Anything else raises ``CSVError``, one line naming
    the file, the line and what is wrong: the sweep never writes over a file it cannot read whole.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise CSVError(f"cannot read the sweep's CSV {path}: {error.strerror}") from None
    if not raw:
        return []
    if raw.startswith(codecs.BOM_UTF8):
        raise CSVError(f"{path} line 1: the file starts with a byte-order mark; save it as UTF-8 without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise CSVError(f"{path} line {line}: not UTF-8 text (byte {raw[error.start]:#04x})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        records = [(reader.line_num, fields) for fields in reader if fields]      # blank lines skipped
    except csv.Error as error:
        raise CSVError(f"{path} line {reader.line_num}: {error}") from None
    if sorted(header) != sorted(FIELDS):
        if not set(header) & set(FIELDS):
            raise CSVError(f"{path} line 1: no header line (the sweep's is {','.join(FIELDS)})")
        missing = [name for name in FIELDS if name not in header]
        unknown = [name for name in header if name not in FIELDS]
        twice = sorted({name for name in header if header.count(name) > 1})
        raise CSVError(f"{path} line 1: the columns are not the sweep's (missing {missing}, unknown {unknown}"
                       + (f", twice {twice}" if twice else "") + f"; expected {','.join(FIELDS)}): another "
                       "layout, which the sweep would not keep")

    def problem(fields):
        if len(fields) != len(FIELDS):
            extra = f": {fields[len(FIELDS):]!r} past the last column" if len(fields) > len(FIELDS) else ""
            return f"{len(fields)} fields, the header has {len(FIELDS)}{extra}"
        return _problem(dict(zip(header, fields)))

    if records and not text.endswith(("\n", "\r")) and problem(records[-1][1]):
        records.pop()                                         # the last line, cut short
    rows, seen = [], {}
    for line, fields in records:
        wrong = problem(fields)
        if wrong:
            raise CSVError(f"{path} line {line}: {wrong}")
        row = dict(zip(header, fields))
        row = {name: row[name] for name in FIELDS}
        key = (row["experiment"], row["variant"], row["model"], int(row["seed"]), row["metric"])
        if key in seen:
            first_line, first = seen[key]
            if (first["value"] != row["value"] and float(first["value"]) != float(row["value"])) \
                    or _canonical(first["config"]) != _canonical(row["config"]):
                raise CSVError(f"{path} lines {first_line} and {line}: two different measurements of "
                               f"{key[0]} {key[1]} {key[2]} seed {key[3]} {key[4]} "
                               f"({first['value']} and {row['value']})")
            continue
        seen[key] = line, row
        rows.append(row)
    return rows


def write_rows(path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts of the columns) to ``path`` as a whole: into a temporary file of this
    writer's own beside it, then renamed over ``path``, so that a sweep killed while writing
    leaves the file as it was and two writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", newline="",
                  encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def check_out(path) -> None:
    """Refuse, before anything is computed, a ``path`` the sweep cannot record into: a directory,
    a file where one of its folders should be, a folder that cannot be created (which is created
    otherwise), a read-only file; ``CSVError`` says which. (A folder it may not write in is found
    when :func:`run` creates its lock file there.)"""
    path = Path(path)
    if path.is_dir():
        raise CSVError(f"cannot record the sweep in {path}: it is a directory, not a CSV file")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise CSVError(f"cannot record the sweep in {path}: {folder} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CSVError(f"cannot record the sweep in {path}: cannot create its folder {path.parent} "
                       f"({error.strerror})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise CSVError(f"cannot record the sweep in {path}: the file is read-only")


@contextlib.contextmanager
def _lock(path: Path):
    """Hold ``<path>.lock`` for the whole sweep: an exclusive ``fcntl.flock`` (POSIX systems such
    as Linux; not Windows), which the system releases when the holding process ends, killed or
    not. A second writer gets ``SweepLocked`` at once. The lock file holds the holder's process id
    and is removed when the lock is released (a writer that locked a file removed meanwhile
    locks the new one instead)."""
    import fcntl

    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise CSVError(f"cannot record the sweep in {path}: cannot create {lock.name} in its folder "
                           f"({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SweepLocked(f"another sweep is writing {path} (process {holder} holds {lock}): wait for it "
                              f"to end, or record into another file") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)                                   # the lock file of a sweep that has just ended
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _end_with_parent(parent: int, interval: float = 0.2) -> None:
    """A pool worker's initializer: a thread that ends the worker as soon as its parent process
    ``parent`` is gone (killed with -9, say), so that no unit goes on computing for nobody."""
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def expected_metrics(entry: Entry, attacked_images: int, attacks: dict = ATTACKS) -> set:
    """The metrics a complete measurement of ``entry`` has: counts, seconds, upright top-1; every
    view for the experiments of :data:`.plan.VIEWED`; the attacks for the comparison (their rates
    only if some images were attacked). For a config of the fair sweep's task (``config.task``
    set, read from :data:`TASKS`) also the last epoch's training loss and top-1, the step size it
    trained at (a task with ``lr_grid``), the seed its training set was drawn from (a task that
    redraws it), every epoch's training loss and top-1 for a run trained for other epochs than
    its task's (``config.epochs``), the task's views and per-class views; a tuning run has its holdout top-1 and loss
    instead of views."""
    config = entry.config
    names = {"parameters", "multiply_adds", "train_seconds"}
    if config.task:
        task = TASKS[config.task]
        names |= {"train_loss", "train_top1"}
        if config.epochs is not None:
            names |= {f"train_{m}_epoch{k}" for m in ("loss", "top1") for k in range(1, config.epochs + 1)}
        if config.tune_lr is not None:
            return names | {"lr", "holdout_top1", "holdout_loss"}
        names |= {"lr"} if task.lr_grid else set()
        names |= {"subset_seed"} if task.redraw else set()
        views = task.views
        per_class = task.per_class_views
    else:
        views, per_class = tuple(VIEWS), ()
    names.add("top1_upright")
    if entry.experiment in _viewed(entry):
        names |= {f"top1_{v}" for v in views} | {f"top1_{v}_class{c}" for v in views for c in per_class}
    if entry.experiment == COMPARISON:
        names.add("attacked_images")
        if attacked_images:
            names |= {f"{a}_success_eps{e:g}" for a in ("fgsm", "pgd") for e in attacks["eps"]}
    return names


def chosen_lr(rows: list[dict], config: Config, grid) -> float | None:
    """The step size chosen for ``config`` from its tuning runs recorded in ``rows`` (experiment
    :data:`.plan.STEP_SIZE`): the one of ``grid`` with the best holdout top-1, ties broken by the
    lower holdout loss, then the smaller step. None until every step size of the grid is recorded."""
    scores = {}
    for lr in grid:
        key = _canonical(config.tuned(lr).key)
        found = {r["metric"]: float(r["value"]) for r in rows
                 if r["experiment"] == STEP_SIZE and _canonical(r["config"]) == key}
        if not {"holdout_top1", "holdout_loss"} <= set(found):
            return None
        scores[lr] = (-found["holdout_top1"], found["holdout_loss"], lr)
    return min(scores, key=scores.get) if scores else None


def _rows(entry: Entry, seed: int, metrics: dict, stamp: dict) -> list[dict]:
    return [{"experiment": entry.experiment, "variant": entry.variant, "model": entry.label, "seed": seed,
             "metric": name, "value": f"{value:.6g}" if isinstance(value, float) else value,
             "config": entry.config.key, **stamp} for name, value in metrics.items()]


def _groups(rows: list[dict]) -> dict:
    """{(experiment, variant, model, seed): {metric: row}}."""
    groups = {}
    for r in rows:
        groups.setdefault((r["experiment"], r["variant"], r["model"], int(r["seed"])), {})[r["metric"]] = r
    return groups


def _matches(entry: Entry, group: dict | None) -> bool:
    """Whether every row of ``group`` was measured with the plan's config of ``entry``."""
    return bool(group) and all(_canonical(r["config"]) == _canonical(entry.config.key) for r in group.values())


def _complete(entry: Entry, group: dict | None, attacks: dict) -> bool:
    if not _matches(entry, group):
        return False
    attacked = int(float(group["attacked_images"]["value"])) if "attacked_images" in group else 0
    return expected_metrics(entry, attacked, attacks) <= set(group)


def _key(entry: Entry, seed: int) -> tuple:
    return entry.experiment, entry.variant, entry.label, seed


def stale(path, entries=ENTRIES, seeds=range(5)) -> list[tuple]:
    """The measurements of ``entries`` at ``seeds`` (ints, or {experiment: ints}) that ``path`` records under another config
    than the plan's (the plan changed since): [(entry, seed, the config recorded)]. The sweep
    computes them again and replaces their rows."""
    groups = _groups(read_rows(path))
    out = []
    for seed in _all_seeds(entries, seeds):
        for entry in (e for e in entries if seed in seeds_of(seeds, e.experiment)):
            group = groups.get(_key(entry, seed))
            if group and not _matches(entry, group):
                recorded = next(r["config"] for r in group.values()
                                if _canonical(r["config"]) != _canonical(entry.config.key))
                out.append((entry, seed, recorded))
    return out


def pending(path, entries=ENTRIES, seeds=range(5), attacks: dict = ATTACKS) -> tuple[list[Unit], list[dict]]:
    """What is left of ``entries`` at ``seeds`` (ints, or {experiment: ints}): the units to compute, and the rows to copy from a measurement of the same
    config at the same seed that has every metric the entry needs. An entry whose rows are
    incomplete (a sweep killed while writing them), or recorded under another config than the
    plan's (see :func:`stale`), counts as missing. Raises ``CSVError`` if ``path`` cannot be
    read whole."""
    entries = list(entries)
    seeds = seeds if isinstance(seeds, dict) else list(seeds)
    groups = _groups(read_rows(path))
    copies, todo = [], set()
    for unit in units(entries, seeds):
        for config in unit.configs:
            for entry in (e for e in entries if e.config == config and unit.seed in seeds_of(seeds, e.experiment)):
                if _complete(entry, groups.get(_key(entry, unit.seed)), attacks):
                    continue
                source = next((g for (_, _, _, seed), g in groups.items()
                               if seed == unit.seed and _complete(entry, g, attacks)), None)
                if source is None:
                    todo.add(unit)
                else:
                    copies += [{**r, "experiment": entry.experiment, "variant": entry.variant, "model": entry.label}
                               for r in source.values()]
    return [u for u in units(entries, seeds) if u in todo], copies


def _merge(path, new_rows: list[dict]) -> None:
    """Replace in the CSV every (experiment, variant, model, seed) that ``new_rows`` measure."""
    def key(r):
        return r["experiment"], r["variant"], r["model"], int(r["seed"])
    replaced = {key(r) for r in new_rows}
    write_rows(path, [r for r in read_rows(path) if key(r) not in replaced] + new_rows)


def _missing(unit: Unit, metrics, entries: list, attacks: dict, seeds=None) -> str | None:
    """What a unit's computed ``metrics`` lack to be recorded (the sweep writes only what it can
    read back), or None."""
    if not isinstance(metrics, dict) or set(metrics) != set(unit.configs):
        return f"computed {type(metrics).__name__} {metrics!r:.80}, not {{config: metrics}} of the unit's configs"
    for config, values in metrics.items():
        if not isinstance(values, dict):
            return f"{config.name}: computed {type(values).__name__}, not {{metric: number}}"
        wrong = [k for k, v in values.items() if not isinstance(v, numbers.Real) or isinstance(v, bool)]
        if wrong:
            return f"{config.name}: metrics {wrong} are not numbers"
        for entry in (e for e in entries if e.config == config
                      and (seeds is None or unit.seed in seeds_of(seeds, e.experiment))):
            lacking = expected_metrics(entry, values.get("attacked_images", 0), attacks) - set(values)
            if lacking:
                return f"{config.name}: no {sorted(lacking)}"
    return None


def _in_pool(todo: list, compute, arguments, jobs: int, done) -> None:
    """Compute ``todo`` in ``jobs`` spawned processes, calling ``done(unit, metrics, error)`` in
    this process as each unit completes. If this process stops (an exception, Ctrl-C), the units
    not started are cancelled and the workers ended; if it is killed, the workers end by
    themselves (:func:`_end_with_parent`)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_end_with_parent, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(compute, *arguments(unit)): unit for unit in todo}
        for future in as_completed(futures):
            try:
                metrics = future.result()
            except Exception as error:              # the unit's, or its worker's death (BrokenProcessPool)
                done(futures[future], None, error)
            else:
                done(futures[future], metrics, None)
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())   # shutdown() forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()                          # Python < 3.14 has no public way to end them
        raise
    pool.shutdown()


def tuned_as(config: Config, entries) -> Config:
    """The network whose tuning runs choose ``config``'s step size: ``config``'s network itself
    (:attr:`.plan.Config.network`: a run trained for longer borrows its network's) if ``entries``
    hold tuning runs of it, else its model's default network of the plan (an ablation's
    variant trains at the step size chosen for the network it varies, :data:`.plan.FAIR`) if
    ``entries`` hold tuning runs of that, else ``config``."""
    tuned = {e.config.network for e in entries if e.config.tune_lr is not None}
    if config.network in tuned:
        return config.network
    with contextlib.suppress(KeyError, ValueError):
        default = Config.of(config.model, config.task)
        if default in tuned:
            return default
    return config


def _with_choices(unit: Unit, task, rows: list[dict], entries=()):
    """``task`` as :func:`task_of` reads it, with the step sizes chosen for the unit's networks
    (their tasks' ``chosen``; see :func:`tuned_as`); raises ``ValueError`` for a network whose
    tuning runs are not all recorded."""
    choices = {}
    for config in unit.configs:
        setup = task_of(config, task)
        if config.tune_lr is None and setup.lr_grid:
            source = tuned_as(config, entries)
            lr = chosen_lr(rows, source, setup.lr_grid)
            if lr is None:
                whose = "its" if source == config else f"{source.name}'s (the network it varies)"
                raise ValueError(f"no step size chosen for {config.name}: {whose} tuning runs at "
                                 f"{', '.join(f'{x:g}' for x in setup.lr_grid)} are not all recorded")
            choices.setdefault(config.task, []).append((config.key, lr))
    if not choices:
        return task
    if isinstance(task, Task):
        return dataclasses.replace(task, chosen=tuple(p for pairs in choices.values() for p in pairs))
    tasks = {**TASKS, **(task or {})}
    return {**tasks, **{name: dataclasses.replace(tasks[name], chosen=tuple(pairs)) for name, pairs in choices.items()}}


def run(path, entries=ENTRIES, seeds=range(5), jobs: int = 1, threads: int = 1, progress: bool = True,
        task=None, attacks: dict = ATTACKS, compute=None) -> int:
    """Run every pending unit (``jobs`` processes of ``threads`` threads each), adding its rows to
    ``path`` as each unit finishes. Returns the number of units computed. Every view of the task
    is measured for the configs of :data:`.plan.VIEWED` (:data:`.plan.FAIR_VIEWED`), only the
    upright images for the others.

    ``seeds``: ints for every experiment, or {experiment: ints} (:data:`.plan.FAIR_SEEDS`).
    ``task``: the task of every config (a :class:`.task.Task`, e.g. a smaller one in tests), a
    mapping {config.task: Task}, or None: :data:`TASKS` (see :func:`task_of`).

    Tuning runs (experiment :data:`.plan.STEP_SIZE`) are computed first; each network of a task
    with ``lr_grid`` then trains at the step size chosen from them (:func:`chosen_lr`), passed to
    ``compute`` in its task's ``chosen``. A network whose tuning runs are not all recorded fails
    with a message saying so.

    ``compute(unit, threads, task, attacks, views) -> {config: {metric: number}}`` computes a
    unit: :func:`run_unit` (None), or a stand-in in tests; with ``jobs`` > 1 it must be a
    module-level function (the workers import it).

    Before anything is computed: ``CSVError`` if ``path`` cannot be written or its CSV cannot be
    read whole, ``SweepLocked`` if another sweep is writing it (see the module's docstring).
    A unit that raises, or whose metrics lack what its entries need, does not stop the sweep:
    the others are computed and recorded, then ``UnitsFailed`` names the failed units.
    """
    for name, value in (("jobs", jobs), ("threads", threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int of at least 1, got {value!r}")
    compute = run_unit if compute is None else compute
    path, entries = Path(path), list(entries)
    seeds = seeds if isinstance(seeds, dict) else list(seeds)
    check_out(path)
    tuning = [e for e in entries if e.config.tune_lr is not None]
    done_units, failures = [], []
    with _lock(path):
        stamp = {"commit": commit(), "machine": machine(), "date": datetime.date.today().isoformat()}
        for phase in ([tuning, entries] if tuning and len(tuning) < len(entries) else [entries]):
            todo, copies = pending(path, phase, seeds, attacks)
            todo = [u for u in todo if u not in done_units and all(u != f for f, _ in failures)]
            if copies:
                _merge(path, copies)
            _run_phase(path, todo, phase, seeds, jobs, threads, progress, task, attacks, compute, stamp, failures)
            done_units += todo
    if failures:
        failures.sort(key=lambda failure: done_units.index(failure[0]))
        raise UnitsFailed(failures, len(done_units) - len(failures))
    return len(done_units)


def _run_phase(path, todo, entries, seeds, jobs, threads, progress, task, attacks, compute, stamp, failures):
    """Compute ``todo`` and record each unit as it completes (see :func:`run`); the failed units
    are added to ``failures``."""
    def record(unit: Unit, metrics: dict) -> None:
        groups, rows = _groups(read_rows(path)), []
        for config, values in metrics.items():
            for entry in (e for e in entries if e.config == config and unit.seed in seeds_of(seeds, e.experiment)):
                if not _complete(entry, groups.get(_key(entry, unit.seed)), attacks):
                    rows += _rows(entry, unit.seed, values, stamp)
        _merge(path, rows)

    def done(unit: Unit, metrics, error) -> None:
        if error is None:
            wrong = _missing(unit, metrics, entries, attacks, seeds)
            error = None if wrong is None else ValueError(wrong)
        if error is None:
            record(unit, metrics)
        else:
            failures.append((unit, error))
            bar.set_postfix(failed=len(failures))
        bar.update()

    rows = read_rows(path)
    ready, arguments = [], {}
    for unit in todo:
        try:
            unit_task = _with_choices(unit, task, rows, entries)
        except ValueError as error:
            failures.append((unit, error))
            continue
        viewed = any(e.experiment in _viewed(e) for e in entries if e.config in unit.configs)
        arguments[unit] = (unit, threads, unit_task, attacks, viewed)
        ready.append(unit)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(ready), desc="sweep", unit="unit", disable=not progress)
    try:
        if jobs == 1:
            for unit in ready:
                try:
                    metrics = compute(*arguments[unit])
                except Exception as error:
                    done(unit, None, error)
                else:
                    done(unit, metrics, None)
        else:
            _in_pool(ready, compute, arguments.__getitem__, jobs, done)
    finally:
        bar.close()
