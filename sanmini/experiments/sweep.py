"""The sweep: every entry of :mod:`.plan` at every seed, resumable, one CSV row per measurement.

A *unit* is what is computed at once: one network at one seed, or, for the comparison, its three
networks at one seed (the attacks run on the validation digits that all three classify
correctly, so they need all three). A unit's rows are appended to the CSV in one write once it is
done; a killed sweep loses at most the units in progress, and a rerun computes only the units
whose rows are missing. Rows of an entry whose Config was already measured at that seed (an
ablation's default variant) are copied, not recomputed.

Columns: ``experiment, variant, model, seed, metric, value, config, commit, machine, date``.
"""
from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .plan import ATTACKS, ENTRIES, VIEWED, Config, Entry
from .task import TASK, Task, fit, load, predict, view_accuracies

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


def units(entries: Iterable[Entry], seeds: Iterable[int]) -> list[Unit]:
    """The units that cover ``entries`` at ``seeds``: the comparison's configs together, every
    other config alone, each config once per seed."""
    entries, out = list(entries), []
    comparison = tuple(dict.fromkeys(e.config for e in entries if e.experiment == COMPARISON))
    others = tuple(dict.fromkeys(e.config for e in entries if e.config not in comparison))
    for seed in seeds:
        if comparison:
            out.append(Unit(comparison, seed))
        out += [Unit((config,), seed) for config in others]
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
    task's image size, training seconds, top-1 on the upright validation digits and, with
    ``views``, on every view of :data:`.task.VIEWS`."""
    from ..models import count_flops
    from ..train import seed_everything

    (train_x, train_y), (val_x, val_y) = data
    seed_everything(seed)
    model = config.build()
    metrics = {"parameters": sum(p.numel() for p in model.parameters()),
               "multiply_adds": count_flops(model, (1, 3, task.image_size, task.image_size))}
    metrics["train_seconds"] = fit(model, train_x, train_y, seed, task)
    metrics.update(view_accuracies(model, val_x, val_y, None if views else ["upright"]))
    return model, metrics


def attack(models: dict, seed: int, data, attacks: dict = ATTACKS) -> dict:
    """FGSM and PGD success rates (%) of every model in ``models`` ({config: network}) at each
    ``attacks["eps"]``, on the first ``attacks["images"]`` validation digits (in [0, 1]) that every
    model classifies correctly; PGD takes ``attacks["pgd_steps"]`` steps from a random start."""
    from ..data import IMAGENET_MEAN, IMAGENET_STD
    from ..robustness import Normalized, attack_success_rate, fgsm, pgd

    _, (val_x, val_y) = data
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = val_x * std + mean                                   # (N, 3, S, S) back in [0, 1]
    pixels = pixels.clamp(0, 1)
    correct = torch.stack([predict(m, val_x) == val_y for m in models.values()]).all(0)
    chosen = correct.nonzero()[:attacks["images"], 0]
    x, y = pixels[chosen], val_y[chosen]
    out = {}
    for config, model in models.items():
        attacked = Normalized(model, IMAGENET_MEAN, IMAGENET_STD)
        rates = {"attacked_images": len(chosen)}
        for e in attacks["eps"] if len(chosen) else ():       # no success rate of no images
            rates[f"fgsm_success_eps{e:g}"] = 100.0 * attack_success_rate(attacked, fgsm(attacked, x, y, e), y)
            generator = torch.Generator().manual_seed(seed)
            rates[f"pgd_success_eps{e:g}"] = 100.0 * attack_success_rate(
                attacked, pgd(attacked, x, y, e, steps=attacks["pgd_steps"], generator=generator), y)
        out[config] = rates
    return out


def run_unit(unit: Unit, threads: int = 1, task: Task = TASK, attacks: dict = ATTACKS,
             views: bool = True) -> dict:
    """Compute one unit: {config: {metric: value}}, on ``threads`` torch and Numba threads. Every
    view of the digits is measured for the comparison and with ``views``, else only upright."""
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    data = load(task)
    models, metrics = {}, {}
    for config in unit.configs:
        models[config], metrics[config] = measure_network(config, unit.seed, data, task, views or unit.attacked)
    if unit.attacked:
        for config, rates in attack(models, unit.seed, data, attacks).items():
            metrics[config].update(rates)
    return metrics


def read_rows(path) -> list[dict]:
    """The rows of the CSV at ``path`` ([] if it does not exist). A last line cut short by a killed
    sweep is dropped (and the file rewritten without it)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    complete = [r for r in rows if None not in r.values() and r.get("date")]
    if len(complete) != len(rows):
        write_rows(path, complete, mode="w")
    return complete


def write_rows(path, rows: list[dict], mode: str = "a") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = mode == "w" or not path.exists() or path.stat().st_size == 0
    with open(path, mode, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def _rows(entry: Entry, seed: int, metrics: dict, stamp: dict) -> list[dict]:
    return [{"experiment": entry.experiment, "variant": entry.variant, "model": entry.label, "seed": seed,
             "metric": name, "value": f"{value:.6g}" if isinstance(value, float) else value,
             "config": entry.config.key, **stamp} for name, value in metrics.items()]


def _done(rows: list[dict]) -> dict:
    """{(experiment, variant, model, seed): [rows]} of what the CSV holds."""
    done = {}
    for r in rows:
        done.setdefault((r["experiment"], r["variant"], r["model"], int(r["seed"])), []).append(r)
    return done


def pending(path, entries=ENTRIES, seeds=range(5)) -> tuple[list[Unit], list[dict]]:
    """What is left: the units to compute, and rows to copy from configs already measured."""
    entries, seeds = list(entries), list(seeds)
    done = _done(read_rows(path))
    measured = {}                                          # (config key, seed) -> rows of one entry
    for (experiment, variant, model, seed), rows in done.items():
        measured.setdefault((rows[0]["config"], seed), (experiment, rows))
    copies, todo = [], set()
    for unit in units(entries, seeds):
        for config in unit.configs:
            for entry in (e for e in entries if e.config == config):
                if (entry.experiment, entry.variant, entry.label, unit.seed) in done:
                    continue
                source = measured.get((config.key, unit.seed))
                usable = source and (not unit.attacked or source[0] == COMPARISON)
                if usable:
                    copies += [{**r, "experiment": entry.experiment, "variant": entry.variant, "model": entry.label}
                               for r in source[1]]
                else:
                    todo.add(unit)
    return [u for u in units(entries, seeds) if u in todo], copies


def run(path, entries=ENTRIES, seeds=range(5), jobs: int = 1, threads: int = 1, progress: bool = True,
        task: Task = TASK, attacks: dict = ATTACKS) -> int:
    """Run every pending unit (``jobs`` processes of ``threads`` threads each), appending rows to
    ``path`` as units finish. Returns the number of units computed. Every view of the digits is
    measured for the configs of :data:`.plan.VIEWED`, only the upright digits for the others."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    from tqdm.auto import tqdm

    entries, seeds = list(entries), list(seeds)
    todo, copies = pending(path, entries, seeds)
    stamp = {"commit": commit(), "machine": machine(), "date": datetime.date.today().isoformat()}
    if copies:
        write_rows(path, [{**r, **stamp} if not r.get("date") else r for r in copies])

    def record(unit: Unit, metrics: dict) -> None:
        rows, done = [], _done(read_rows(path))
        for config, values in metrics.items():
            for entry in (e for e in entries if e.config == config):
                if (entry.experiment, entry.variant, entry.label, unit.seed) not in done:
                    rows += _rows(entry, unit.seed, values, stamp)
        write_rows(path, rows)

    def viewed(unit: Unit) -> bool:
        return any(e.experiment in VIEWED for e in entries if e.config in unit.configs)

    bar = tqdm(total=len(todo), desc="sweep", unit="unit", disable=not progress)
    if jobs == 1:
        for unit in todo:
            record(unit, run_unit(unit, threads, task, attacks, viewed(unit)))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(run_unit, unit, threads, task, attacks, viewed(unit)): unit for unit in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
                bar.update()
    bar.close()
    return len(todo)
