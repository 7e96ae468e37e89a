"""The sweep: every entry of :mod:`.plan` at every seed, resumable, one CSV row per measurement.

A *unit* is what is computed at once: one network at one seed, or, for the comparison, its three
networks at one seed (the attacks run on the validation digits that all three classify
correctly, so they need all three). Once a unit is done its rows are added to the CSV, which is
rewritten whole and renamed into place; a killed sweep loses at most the units in progress, and a
rerun computes only the units whose rows are missing or incomplete. Rows of an entry whose Config
was already measured at that seed (an ablation's default variant) are copied, not recomputed.

Columns: ``experiment, variant, model, seed, metric, value, config, commit, machine, date``.
"""
from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from .plan import ATTACKS, ENTRIES, VIEWED, Config, Entry
from .task import TASK, VIEWS, Task, fit, load, predict, view_accuracies

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


def units(entries, seeds) -> list[Unit]:
    """The units that cover ``entries`` (Entry objects) at ``seeds`` (ints): the comparison's
    configs together, every other config alone, each config once per seed."""
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
    """The rows of the CSV at ``path`` ([] if it does not exist); a line cut short is left out."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if None not in r.values() and r.get("date")]


def write_rows(path, rows: list[dict]) -> None:
    """Write ``rows`` to ``path`` as a whole: to a temporary file, then renamed over ``path``, so
    a sweep killed while writing leaves the file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def expected_metrics(entry: Entry, attacked_images: int, attacks: dict = ATTACKS) -> set:
    """The metrics a complete measurement of ``entry`` has: counts, seconds, upright top-1; every
    view for the experiments of :data:`.plan.VIEWED`; the attacks for the comparison (their rates
    only if some images were attacked)."""
    names = {"parameters", "multiply_adds", "train_seconds", "top1_upright"}
    if entry.experiment in VIEWED:
        names |= {f"top1_{v}" for v in VIEWS}
    if entry.experiment == COMPARISON:
        names.add("attacked_images")
        if attacked_images:
            names |= {f"{a}_success_eps{e:g}" for a in ("fgsm", "pgd") for e in attacks["eps"]}
    return names


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


def _complete(entry: Entry, group: dict | None, attacks: dict) -> bool:
    if not group:
        return False
    attacked = int(float(group["attacked_images"]["value"])) if "attacked_images" in group else 0
    return expected_metrics(entry, attacked, attacks) <= set(group)


def pending(path, entries=ENTRIES, seeds=range(5), attacks: dict = ATTACKS) -> tuple[list[Unit], list[dict]]:
    """What is left: the units to compute, and the rows to copy from a measurement of the same
    config at the same seed that has every metric the entry needs. An entry whose rows are
    incomplete (a sweep killed while writing them) counts as missing."""
    entries, seeds = list(entries), list(seeds)
    groups = _groups(read_rows(path))
    copies, todo = [], set()
    for unit in units(entries, seeds):
        for config in unit.configs:
            for entry in (e for e in entries if e.config == config):
                if _complete(entry, groups.get((entry.experiment, entry.variant, entry.label, unit.seed)), attacks):
                    continue
                source = next((g for (_, _, _, seed), g in groups.items() if seed == unit.seed
                               and next(iter(g.values()))["config"] == config.key
                               and _complete(entry, g, attacks)), None)
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


def run(path, entries=ENTRIES, seeds=range(5), jobs: int = 1, threads: int = 1, progress: bool = True,
        task: Task = TASK, attacks: dict = ATTACKS) -> int:
    """Run every pending unit (``jobs`` processes of ``threads`` threads each), adding its rows to
    ``path`` as each unit finishes. Returns the number of units computed. Every view of the digits
    is measured for the configs of :data:`.plan.VIEWED`, only the upright digits for the others."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    from tqdm.auto import tqdm

    entries, seeds = list(entries), list(seeds)
    todo, copies = pending(path, entries, seeds, attacks)
    if copies:
        _merge(path, copies)
    stamp = {"commit": commit(), "machine": machine(), "date": datetime.date.today().isoformat()}

    def record(unit: Unit, metrics: dict) -> None:
        groups, rows = _groups(read_rows(path)), []
        for config, values in metrics.items():
            for entry in (e for e in entries if e.config == config):
                if not _complete(entry, groups.get((entry.experiment, entry.variant, entry.label, unit.seed)), attacks):
                    rows += _rows(entry, unit.seed, values, stamp)
        _merge(path, rows)

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
