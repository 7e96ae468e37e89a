"""How long the units of a sweep will take, from one timed training step of each network, to plan
a run in parts (the whole sweep has 240 minutes on 2 cores).

A unit's estimate is its networks' training steps (``task.steps()``) times the seconds of one
step (forward, backward and update of a batch of ``task.batch_size`` at ``task.image_size``,
the fastest of ``repeats`` after a warm-up, on ``threads`` threads, on this machine now), plus,
for the comparison, its attacks: every budget of the grid, FGSM one gradient pass and PGD
``pgd_steps * pgd_restarts`` + 1 (an upper bound: images already fooled are not attacked again),
of ``attacks["images"]`` images, counted as a fraction of a training step of the same images.
Evaluation (the validation views) is left out: a forward pass of a few hundred images, small
beside the training. ``python -m sanmini.experiments --estimate`` prints it.
"""
from __future__ import annotations

import time

import torch

from .plan import ATTACKS
from .sweep import Unit, task_of


def step_seconds(config, task, threads: int = 1, repeats: int = 2) -> float:
    """Seconds of one training step of ``config`` on ``task`` (a random batch: the time does not
    depend on the pixels), the fastest of ``repeats`` after one warm-up step."""
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.manual_seed(0)
    model = config.build(task.num_classes).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(task.batch_size, 3, task.image_size, task.image_size)
    y = torch.randint(0, task.num_classes, (task.batch_size,))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def estimate(todo: list[Unit], task=None, attacks: dict = ATTACKS, threads: int = 1,
             timer=None) -> list[tuple[Unit, float]]:
    """[(unit, estimated seconds)] for the units ``todo`` (see the module's docstring); ``task``
    as :func:`.sweep.task_of` reads it; ``timer(config, task, threads)`` times one step (each
    network once; default :func:`step_seconds`)."""
    timer = step_seconds if timer is None else timer
    steps = {}
    out = []
    for unit in todo:
        seconds = 0.0
        for config in unit.configs:
            setup = task_of(config, task)
            network = config.network          # a step's time does not depend on how long it trains
            if network not in steps:
                steps[network] = timer(network, setup, threads)
            seconds += setup.steps() * steps[network]
            if unit.attacked:
                passes = len(attacks["eps"]) * (1 + attacks["pgd_steps"] * attacks.get("pgd_restarts", 1) + 1)
                seconds += passes * attacks["images"] / setup.batch_size * steps[network]
        out.append((unit, seconds))
    return out


def report(estimates: list[tuple[Unit, float]], jobs: int = 1) -> str:
    """One line per unit with its estimated minutes, and the total: summed, and in wall-clock
    time with ``jobs`` processes (units spread over them, longest first)."""
    lines = [f"{seconds / 60:8.1f} min  {unit.name}" for unit, seconds in estimates]
    total = sum(seconds for _, seconds in estimates)
    loads = [0.0] * max(1, jobs)
    for seconds in sorted((s for _, s in estimates), reverse=True):
        loads[loads.index(min(loads))] += seconds
    lines.append(f"estimated {total / 60:.0f} min of computing, about {max(loads) / 60:.0f} min with "
                 f"{jobs} job{'s' if jobs != 1 else ''} (from one timed step per network on this machine now)")
    return "\n".join(lines)
