"""Wall-clock timings that a busy machine cannot turn around: the calls take turns, and each is
reported by the fastest of several runs.

A page of the book is built on a machine that may be doing other work. A burst of that work slows
whichever call runs during it; timing one call five times and then the other five times can put the
whole burst on one of them and reverse their order. Here every round runs each call once, in turn,
so a burst lands on all of them alike, and the fastest run of each call is the time it needs when
nothing got in the way. The chapters print such times as this machine's, now, and decide nothing
from them; the recorded benchmarks (``bench/``) say on which machine and date they were measured.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping


def take_turns(calls: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
               sync: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Seconds of every run of each call: ``warmup`` untimed rounds (compilation, caches), then
    ``repeats`` timed rounds, each of which runs every call once, in the order given.

    ``sync``, if given, runs after each call before the clock stops (``torch.cuda.synchronize``
    for work on a GPU, which returns before the kernels finish).

    Returns ``{name: [seconds of round 1, ..., seconds of round repeats]}``. ``calls`` must name at
    least one callable, ``repeats`` be at least 1 and ``warmup`` at least 0.
    """
    if not isinstance(calls, Mapping) or not calls or not all(callable(c) for c in calls.values()):
        raise ValueError(f"calls must be a non-empty mapping of names to callables, got {calls!r}")
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    for _ in range(warmup):
        for call in calls.values():
            call()
            if sync is not None:
                sync()
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if sync is not None:
                sync()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def fastest(calls: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
            sync: Callable[[], object] | None = None) -> dict[str, float]:
    """The fastest run of each call, in seconds, over ``repeats`` rounds in which the calls take
    turns (:func:`take_turns`, with the same arguments)."""
    return {name: min(times) for name, times in take_turns(calls, repeats, warmup, sync).items()}
