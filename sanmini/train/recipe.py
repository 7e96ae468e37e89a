"""The training recipe of Zhao et al., CVPR 2020: the loss, the optimizer, the schedule.

- Loss: cross-entropy with label smoothing as the reference implementation computes it: the
  target class gets probability 1 - eps and each of the K - 1 other classes eps / (K - 1).
  (torch's ``CrossEntropyLoss(label_smoothing=eps)`` gives eps / K to every class, the target
  included; that is ``smoothing_style="uniform"``.) Both are the same cross-entropy against a
  mixture of the one-hot target and a uniform distribution, so the reference's is torch's with
  eps' = eps * K / (K - 1): target 1 - eps' + eps'/K = 1 - eps, others eps'/K = eps/(K-1).
- Optimizer: SGD, momentum 0.9, weight decay 1e-4 on every parameter (batch norm included), step
  size 0.1 per 256 images.
- Schedule: cosine from the step size to 0 over the run, stepped per epoch (epoch e of E uses
  lr * (1 + cos(pi * e / E)) / 2, as ``CosineAnnealingLR(T_max=E)`` stepped once an epoch),
  no warm-up. Options: a linear warm-up, and a cosine stepped every iteration.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing: logits (N, K), target (N,) class indices -> scalar.

    ``style="reference"``: target 1 - eps, each other class eps / (K - 1) (Zhao et al.'s code);
    ``style="uniform"``: eps / K to every class on top of 1 - eps on the target (torch's).
    """

    def __init__(self, eps: float = 0.1, style: str = "reference"):
        super().__init__()
        if not 0 <= eps < 1:
            raise ValueError(f"label smoothing eps must be in [0, 1), got {eps}")
        if style not in ("reference", "uniform"):
            raise ValueError(f"smoothing style must be 'reference' or 'uniform', got {style!r}")
        self.eps, self.style = eps, style

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        eps = self.eps
        if self.style == "reference" and eps > 0:
            if num_classes < 2:
                raise ValueError("label smoothing over the other classes needs at least 2 classes")
            eps = eps * num_classes / (num_classes - 1)
        return F.cross_entropy(logits, target, label_smoothing=eps)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """Parameter groups for the optimizer: every parameter decayed (the reference), or, with
    ``decay_norm_and_bias=False``, normalisation-layer parameters and biases exempt."""
    if decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, exempt = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (exempt if isinstance(module, NORM_LAYERS) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def step_size(lr: float, batch_size: int, scaling: str = "linear") -> float:
    """The SGD step size: ``lr`` per 256 images scaled to the batch (``"linear"``) or ``lr`` itself."""
    return lr * batch_size / 256 if scaling == "linear" else lr


def make_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                   decay_norm_and_bias: bool = True) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model, weight_decay, decay_norm_and_bias), lr=lr,
                           momentum=momentum)


def lr_factor(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
              per_step: bool = False) -> float:
    """The multiplier of the step size at iteration ``step`` (0-based) of the run.

    Warm-up: linear from 1/W to 1 over the first W = warmup_epochs * steps_per_epoch iterations.
    Then cosine from 1 to 0 over the remaining epochs, as a function of the epoch (``step //
    steps_per_epoch``, the reference) or of the fractional epoch (``per_step=True``).
    """
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step / steps_per_epoch if per_step else step // steps_per_epoch
    progress = (epoch - warmup_epochs) / (epochs - warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def make_scheduler(optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
                   per_step: bool = False) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per iteration (``scheduler.step()`` after ``optimizer.step()``)
    whose factor is :func:`lr_factor`; its state is the iteration count, so it resumes exactly."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, epochs, warmup_epochs, per_step))
