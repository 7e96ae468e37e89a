"""What Zhao et al. (CVPR 2020) found, rebuilt at small scale: the comparison of SAN10 pairwise,
SAN10 patchwise and ResNet26, the ablations (relation, footprint, position encoding, depth of
gamma, shared transformations) and the robustness tests (rotated and flipped digits, FGSM and PGD),
on scikit-learn's digits, with seeds.

- :mod:`.task`: the small task (digits, fewer training images, short training) and what is measured;
- :mod:`.plan`: every configuration of the sweep;
- :mod:`.sweep`: the resumable sweep, one CSV row per measurement;
- :mod:`.results`: reading the recorded CSV: spreads, paired differences over seeds, verdicts.

``python -m sanmini.experiments`` runs the sweep into ``book/results/experiments.csv``.
"""
from . import results
from .plan import ATTACKS, ENTRIES, EXPERIMENTS, Config, Entry
from .sweep import Unit, pending, read_rows, run, run_unit, units
from .task import TASK, VIEWS, Task, fit, load, predict, training_subset, view_accuracies

__all__ = ["results", "TASK", "Task", "VIEWS", "ATTACKS", "ENTRIES", "EXPERIMENTS", "Config", "Entry", "Unit",
           "load", "fit", "predict", "training_subset", "view_accuracies", "units", "pending", "run",
           "run_unit", "read_rows"]
