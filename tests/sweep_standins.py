"""Stand-in units for the sweep's tests: ``compute(unit, threads, task, attacks, views)`` that train
no network. Module-level functions, so that the sweep's spawned workers can import them (pytest
puts tests/ on sys.path, and spawned workers get the parent's sys.path)."""
import os
import time
from pathlib import Path

from sanmini.experiments.task import VIEWS

SEVEN = (7, 7, 7, 3, 3)


def metrics(unit, views: bool) -> dict:
    """Complete made-up metrics of every config of ``unit``: what its entries need."""
    out = {}
    for i, config in enumerate(unit.configs):
        values = {"parameters": 1000 + i, "multiply_adds": 5000 + i, "train_seconds": 0.25}
        for view in (VIEWS if views or unit.attacked else ["upright"]):
            values[f"top1_{view}"] = 10.0 * unit.seed + i + 0.5
        if unit.attacked:
            values["attacked_images"] = 0
        out[config] = values
    return out


def quick(unit, threads, task, attacks, views):
    return metrics(unit, views)


def failing_on_seven(unit, threads, task, attacks, views):
    """Raises for the 7 x 7 footprint at once; every other unit takes 0.3 s."""
    if any(config.kwargs.get("kernels") == SEVEN for config in unit.configs):
        raise RuntimeError("a stand-in unit that fails")
    time.sleep(0.3)
    return metrics(unit, views)


def sleeping(unit, threads, task, attacks, views):
    """Writes this worker's process id into the folder $SWEEP_STANDIN_PIDS, then sleeps 2 minutes."""
    (Path(os.environ["SWEEP_STANDIN_PIDS"]) / str(os.getpid())).write_text(unit.name)
    time.sleep(120)
    return metrics(unit, views)
