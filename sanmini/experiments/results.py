"""Reading the recorded sweep (``book/results/experiments.csv``): values per seed, spreads, paired
comparisons over seeds and the verdict of a claim.

A paired comparison takes two entries measured at the same seeds (the same seed gives two networks
the same batch order; their initial weights differ, as their layers do) and looks at the
difference per seed: its mean, its spread and a 95% confidence interval of the mean from
Student's t distribution with n - 1 degrees of freedom (:func:`paired`). A verdict compares that
interval with a threshold (:func:`verdict`): with 5 seeds an interval is wide, so a small effect
is "not resolved at this scale" rather than decided either way.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .sweep import read_rows


def values(rows: list[dict], experiment: str, variant: str, model: str, metric: str) -> dict[int, float]:
    """{seed: value} of one metric of one entry."""
    out = {int(r["seed"]): float(r["value"]) for r in rows
           if (r["experiment"], r["variant"], r["model"], r["metric"]) == (experiment, variant, model, metric)}
    if not out:
        raise KeyError(f"no rows for experiment={experiment!r}, variant={variant!r}, model={model!r}, "
                       f"metric={metric!r}")
    return out


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation, extremes and count of values over seeds."""
    mean: float
    std: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, vals) -> "Spread":
        vals = list(vals.values() if isinstance(vals, dict) else vals)
        if not vals:
            raise ValueError("a spread needs at least one value")
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return cls(statistics.fmean(vals), std, min(vals), max(vals), len(vals))

    def outside(self, value: float) -> float:
        """How far ``value`` lies outside [low, high] (0 inside)."""
        return max(self.low - value, value - self.high, 0.0)


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


@dataclass(frozen=True)
class Paired:
    """The per-seed differences ``a - b`` and a 95% confidence interval of their mean."""
    differences: dict
    mean: float
    low: float            # the interval's ends
    high: float
    wins: int             # seeds where a > b

    @property
    def n(self) -> int:
        return len(self.differences)


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """Paired comparison of {seed: value} dictionaries over their common seeds (at least 2)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"a paired comparison needs at least 2 common seeds, got {seeds}")
    diff = {s: a[s] - b[s] for s in seeds}
    mean = statistics.fmean(diff.values())
    half = t_quantile(0.975, len(seeds) - 1) * statistics.stdev(diff.values()) / math.sqrt(len(seeds))
    return Paired(diff, mean, mean - half, mean + half, sum(d > 0 for d in diff.values()))


HOLDS, FAILS, UNRESOLVED = "holds", "does not hold", "not resolved at this scale"


def verdict(comparison: Paired, threshold: float = 0.0) -> str:
    """The claim "a - b > threshold": holds if the whole 95% interval is above the threshold, does
    not hold if it is wholly below, else not resolved."""
    if comparison.low > threshold:
        return HOLDS
    if comparison.high < threshold:
        return FAILS
    return UNRESOLVED


def load(path) -> list[dict]:
    """The rows of the recorded sweep at ``path``."""
    rows = read_rows(path)
    if not rows:
        raise FileNotFoundError(f"no recorded sweep at {path}: run python -m sanmini.experiments")
    return rows
