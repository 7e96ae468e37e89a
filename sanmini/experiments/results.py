"""Reading a recorded sweep (``book/results/experiments.csv``, which chapter 5b reads): values per seed, spreads, paired
comparisons over seeds and the verdict of a claim, alone or within a family of claims.

A paired comparison takes two entries measured at the same seeds (the same seed gives two networks
the same data and batch order; their initial weights differ, as their layers do) and looks at the
difference per seed: its mean, its spread and a confidence interval of the mean from Student's t
distribution with n - 1 degrees of freedom (:func:`paired`, 95% unless said). A verdict compares
that interval with a threshold (:func:`verdict`): "holds" if the whole interval lies above it,
"fails" if wholly below, else "not resolved" (an interval across the threshold says neither
"better" nor "no better": with 5 or 8 seeds an interval is wide).

Read together, many 95% intervals give some wrong verdicts by chance. :func:`family` decides the
claims of one family (the ablations; the verdict table) with Holm's step-down correction
(:func:`holm`), which keeps the chance of any wrong verdict in the family at most ``alpha``:
each claim's two-sided p-value of "mean difference = threshold" is adjusted, and a claim is
resolved only if its adjusted p-value is below ``alpha``. Its interval is then shown at the level
Holm's procedure tests it at, ``1 - alpha / (m - r + 1)`` for the claim of rank ``r`` (1: the
smallest p-value) among ``m``: an interval that excludes the threshold at that level but whose
claim is unresolved can happen only when a claim of smaller p-value was not resolved (the
step-down stops there); a resolved claim's interval always excludes the threshold.
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
    """The per-seed differences ``a - b`` and a confidence interval of their mean at ``level``."""
    differences: dict
    mean: float
    low: float            # the interval's ends
    high: float
    wins: int             # seeds where a > b
    level: float = 0.95

    @property
    def n(self) -> int:
        return len(self.differences)

    def p_value(self, threshold: float = 0.0) -> float:
        """The two-sided p-value of Student's paired t-test of "the mean difference is
        ``threshold``" (below ``1 - level`` exactly when the interval excludes ``threshold``).
        Differences without spread give 0 (or 1 if they all equal ``threshold``)."""
        from scipy.stats import t

        sd = statistics.stdev(self.differences.values())
        if sd == 0:
            return 1.0 if self.mean == threshold else 0.0
        score = (self.mean - threshold) / (sd / math.sqrt(self.n))
        return float(2 * t.sf(abs(score), self.n - 1))


def paired(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> Paired:
    """Paired comparison of {seed: value} dictionaries over their common seeds (at least 2), with
    a two-sided confidence interval of the mean difference at ``level`` (0 < level < 1)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be a number between 0 and 1 (a confidence level), got {level!r}")
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"a paired comparison needs at least 2 common seeds, got {seeds}")
    diff = {s: a[s] - b[s] for s in seeds}
    mean = statistics.fmean(diff.values())
    half = t_quantile(0.5 + level / 2, len(seeds) - 1) * statistics.stdev(diff.values()) / math.sqrt(len(seeds))
    return Paired(diff, mean, mean - half, mean + half, sum(d > 0 for d in diff.values()), level)


HOLDS, FAILS, UNRESOLVED = "holds", "fails", "not resolved"


def verdict(comparison: Paired, threshold: float = 0.0) -> str:
    """The claim "a - b > threshold" read off one interval: holds if the whole interval is above
    the threshold, fails if it is wholly below, else not resolved. (Within a family of claims,
    use :func:`family`.)"""
    if comparison.low > threshold:
        return HOLDS
    if comparison.high < threshold:
        return FAILS
    return UNRESOLVED


def holm(p_values) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the order given: sort the ``m`` p-values
    ascending, multiply the one of rank ``r`` by ``m - r + 1``, make the sequence non-decreasing
    (a running maximum) and cap it at 1. A claim is rejected at family-wise level ``alpha``
    exactly when its adjusted p-value is at most ``alpha``.

    Refused: anything that is not a sequence of numbers in [0, 1] (an empty one gives [])."""
    values = list(p_values)
    for p in values:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p_values must be numbers in [0, 1], got {p!r}")
    m, adjusted, running = len(values), [0.0] * len(values), 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: values[i]), start=1):
        running = max(running, min(1.0, (m - rank + 1) * values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Claim:
    """One claim of a family, decided with Holm's correction (see :func:`family`)."""
    paired: Paired        # its interval at the level Holm's procedure tests it at
    threshold: float
    p: float              # the unadjusted two-sided p-value against the threshold
    p_holm: float         # Holm-adjusted within the family
    verdict: str          # HOLDS, FAILS or UNRESOLVED


def family(comparisons: dict, alpha: float = 0.05) -> dict:
    """Decide a family of claims "a - b > threshold" together, with Holm's correction.

    Args:
        comparisons: {name: (a, b, threshold)}, ``a`` and ``b`` {seed: value} dictionaries (at
            least 2 common seeds each).
        alpha: the family-wise error rate (0 < alpha < 1).

    Returns:
        {name: :class:`Claim`}, in the order given: the claim holds if its Holm-adjusted p-value
        is at most ``alpha`` and its mean difference is above the threshold, fails if adjusted
        p <= alpha and the mean is below, else is not resolved. The interval is at level
        ``1 - alpha / (m - r + 1)`` for the claim of rank ``r`` by p-value (see the module's
        docstring). A family of one is :func:`verdict` at level ``1 - alpha``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number between 0 and 1, got {alpha!r}")
    names = list(comparisons)
    plain = {name: paired(a, b) for name, (a, b, _) in comparisons.items()}
    p = {name: plain[name].p_value(comparisons[name][2]) for name in names}
    adjusted = dict(zip(names, holm([p[name] for name in names])))
    ranks = {name: rank for rank, name in enumerate(sorted(names, key=lambda n: p[n]), start=1)}
    out = {}
    for name in names:
        a, b, threshold = comparisons[name]
        interval = paired(a, b, level=1 - alpha / (len(names) - ranks[name] + 1))
        if adjusted[name] <= alpha and interval.mean != threshold:
            word = HOLDS if interval.mean > threshold else FAILS
        else:
            word = UNRESOLVED
        out[name] = Claim(interval, threshold, p[name], adjusted[name], word)
    return out


def load(path) -> list[dict]:
    """The rows of the recorded sweep at ``path``."""
    rows = read_rows(path)
    if not rows:
        raise FileNotFoundError(f"no recorded sweep at {path}: run python -m sanmini.experiments")
    return rows


def falling(rows: list[dict], attacks=("fgsm", "pgd")) -> list[tuple]:
    """Where a recorded attack's success falls as epsilon grows: [(experiment, variant, model,
    seed, attack, smaller eps, larger eps, success at each)] for every pair of consecutive budgets
    of one (entry, seed) whose success is lower at the larger budget. The sweep records success
    cumulatively over its grid (see :func:`.sweep.attack`), so a sweep of that protocol has none."""
    table = {}
    for r in rows:
        for name in attacks:
            prefix = f"{name}_success_eps"
            if r["metric"].startswith(prefix):
                key = (r["experiment"], r["variant"], r["model"], int(r["seed"]), name)
                table.setdefault(key, {})[float(r["metric"][len(prefix):])] = float(r["value"])
    out = []
    for key, by_eps in sorted(table.items()):
        budgets = sorted(by_eps)
        out += [(*key, a, b, by_eps[a], by_eps[b]) for a, b in zip(budgets, budgets[1:]) if by_eps[b] < by_eps[a]]
    return out


def cumulative_attacks(rows: list[dict]) -> bool:
    """Whether ``rows`` record attacks by the protocol of issue 29 (PGD with restarts, success at
    any iterate, both attacks cumulative over the grid): such rows carry a ``pgd_restarts`` metric.
    The sweep of 2026-12-02 (PGD of 10 steps, one start, last iterate; FGSM at each budget alone)
    does not."""
    return any(r["metric"] == "pgd_restarts" for r in rows)

