"""What Zhao et al. (CVPR 2020) found, rebuilt at small scale: the comparison of SAN10 pairwise,
SAN10 patchwise and ResNet26, the ablations (relation, footprint, position encoding, depth of
gamma, shared transformations) and the robustness tests (rotated and flipped images, FGSM and PGD),
with seeds, and a check of the training length (the comparison's networks trained twice as long).

Two plans: the fair sweep recorded in ``book/results/experiments.csv`` (:data:`FAIR`,
:data:`TEXTURES`, :data:`FAIR_ATTACKS`, :data:`FAIR_SEEDS`: what chapter 5b reads), which
``python -m sanmini.experiments`` runs, and the first sweep, kept in
``book/results/digits-first-sweep.csv`` (scikit-learn's digits, :data:`ENTRIES`, :data:`TASK`,
:data:`ATTACKS`, seeds 0-4; ``--plan first``), whose handicaps the fair one removes.

- :mod:`.task`: the small tasks (textures; the first sweep's digits) and what is measured;
- :mod:`.plan`: every configuration of the sweep;
- :mod:`.sweep`: the resumable sweep, one CSV row per measurement;
- :mod:`.results`: reading the recorded CSV: spreads, paired differences over seeds, verdicts
  (with Holm's correction within a family);
- :mod:`.estimate`: the time of the units left, from one timed step per network.

``python -m sanmini.experiments`` runs the fair sweep into ``book/results/experiments.csv``.
"""
from . import results
from .plan import (ATTACKS, ENTRIES, EXPERIMENTS, FAIR, FAIR_ATTACKS, FAIR_EXPERIMENTS, FAIR_SEEDS, Config,
                   Entry)
from .sweep import Unit, pending, read_rows, run, run_unit, units
from .task import (ALL_VIEWS, TASK, TEXTURES, VIEWS, Task, fit, load, load_tuning, predict, training_subset,
                   view_accuracies)

__all__ = ["results", "TASK", "TEXTURES", "Task", "VIEWS", "ALL_VIEWS", "ATTACKS", "ENTRIES", "EXPERIMENTS",
           "FAIR", "FAIR_ATTACKS", "FAIR_EXPERIMENTS", "FAIR_SEEDS", "Config", "Entry", "Unit", "load",
           "load_tuning", "fit", "predict", "training_subset", "view_accuracies", "units", "pending", "run",
           "run_unit", "read_rows"]
