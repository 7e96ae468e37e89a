"""Training and evaluating SAN models: ``python -m sanmini.train DATA --model NAME ...``.

One process on a CPU or a GPU, or many under ``torchrun`` (DistributedDataParallel; NCCL between
GPUs, gloo between CPU processes), with the recipe of Zhao et al., CVPR 2020 as defaults.

- :mod:`.config`: :class:`TrainConfig`, its command line and YAML/TOML files;
- :mod:`.recipe`: label-smoothed loss, SGD parameter groups, cosine schedule;
- :mod:`.engine`: one training epoch, one evaluation pass, top-k accuracy;
- :mod:`.checkpoint`: atomic checkpoints, RNG states;
- :mod:`.distributed`: process group setup from torchrun's environment;
- :mod:`.runlog`: the CSV log, epoch lines and the summary;
- :mod:`.runner`: the run itself (:func:`main`, :func:`train`, :func:`evaluate_weights`).
"""
from .checkpoint import seed_everything
from .config import TrainConfig, parse_args
from .recipe import SmoothedCrossEntropy, lr_factor, make_optimizer, make_scheduler, param_groups, step_size
from .runner import evaluate_weights, main, per_process, run, train

__all__ = ["TrainConfig", "parse_args", "main", "run", "train", "evaluate_weights",
           "SmoothedCrossEntropy", "lr_factor", "make_optimizer", "make_scheduler", "param_groups", "step_size",
           "per_process", "seed_everything"]
