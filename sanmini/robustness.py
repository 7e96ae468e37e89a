"""Adversarial attacks, to measure how robust a classifier is (Zhao et al., CVPR 2020, probe the
robustness of SAN and ResNet models with adversarial attacks).

Both attacks are untargeted and bounded in the L-infinity norm: each pixel of an image ``x`` may move
by at most ``eps``, and the result stays in the valid pixel range ``[lower, upper]``.

* :func:`fgsm`, the fast gradient sign method (Goodfellow et al., 2015): one step of size ``eps``
  along the sign of the gradient of the loss, ``x + eps * sign(grad_x L(f(x), y))``;
* :func:`pgd`, projected gradient descent (Madry et al., 2018): from a uniformly random start in the
  ``eps`` ball (or from ``x``), ``steps`` steps of size ``step_size`` along the sign of the
  gradient, each followed by the projection back onto the ball and the pixel range. One step of
  size ``eps`` from ``x`` is FGSM.

The model maps images in ``[lower, upper]`` to logits; a model trained on normalised images is
attacked through :class:`Normalized`, so that ``eps`` is measured in pixels. The model is run in
evaluation mode during the attack (batch-norm statistics are not touched) and put back as it was.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Normalized(nn.Module):
    """``model((x - mean) / std)``: a model trained on normalised images, taking pixels in [0, 1].

    Args:
        model: the classifier, (N, C, H, W) normalised images -> (N, classes) logits.
        mean, std: per-channel sequences of length C (e.g. ``sanmini.data.IMAGENET_MEAN``).
    """

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check(images: Tensor, labels: Tensor, eps: float, lower: float, upper: float) -> None:
    if not isinstance(images, Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor (N, ...), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} of shape {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(labels, Tensor) or labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} of shape {tuple(getattr(labels, 'shape', ()))}")
    _check_size("eps", eps)
    if not lower < upper:
        raise ValueError(f"lower must be below upper, got lower={lower!r}, upper={upper!r}")
    if images.numel() and (images.min() < lower or images.max() > upper):
        raise ValueError(f"images must lie in [lower, upper] = [{lower}, {upper}], got values from "
                         f"{images.min().item():.4g} to {images.max().item():.4g} (attack the pixels, "
                         f"and put the normalisation in the model: sanmini.robustness.Normalized)")


def _gradient_sign(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """sign of d/dx of the mean cross-entropy of ``model(x)`` against ``labels``."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


class _EvalMode:
    """The model in evaluation mode for the block, and back to its own mode after."""

    def __init__(self, model: nn.Module):
        self.model, self.training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.training)


def fgsm(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
         lower: float = 0.0, upper: float = 1.0) -> Tensor:
    """The fast gradient sign method: ``clamp(x + eps * sign(grad_x CE(model(x), y)), lower, upper)``.

    Args:
        model: (N, ...) images in [lower, upper] -> (N, classes) logits.
        images: (N, C, H, W) float, in [lower, upper].
        labels: (N,) integer class indices (the true classes: the attack is untargeted).
        eps: the L-infinity budget, in the units of the pixels.

    Returns:
        (N, C, H, W), detached: every pixel within ``eps`` of ``images`` and in [lower, upper].
    """
    _check(images, labels, eps, lower, upper)
    with _EvalMode(model):
        step = _gradient_sign(model, images, labels)
    return (images.detach() + eps * step).clamp(lower, upper)


def pgd(model: nn.Module, images: Tensor, labels: Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, lower: float = 0.0,
        upper: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Projected gradient descent in the L-infinity ball of radius ``eps`` (untargeted).

    ``x_0 = clamp(x + U(-eps, eps), lower, upper)`` (or ``x`` without ``random_start``), then
    ``steps`` times ``x_{t+1} = P(x_t + step_size * sign(grad CE(model(x_t), y)))``, where ``P``
    clamps to ``[x - eps, x + eps]`` and then to ``[lower, upper]``.

    Args:
        model, images, labels, eps, lower, upper: as for :func:`fgsm`.
        steps: gradient steps (an int >= 1).
        step_size: the size of each step (default ``2.5 * eps / steps``, so that the steps can
            cross the ball and come back: Madry et al.'s choice).
        random_start: start at a uniformly random point of the ball.
        generator: for the random start (default: torch's global generator, as torchattacks).

    Returns:
        (N, C, H, W), detached: every pixel within ``eps`` of ``images`` and in [lower, upper].
    """
    _check(images, labels, eps, lower, upper)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    _check_size("step_size", step_size)
    x = images.detach()
    adversarial = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        adversarial = (adversarial + noise).clamp(lower, upper)
    with _EvalMode(model):
        for _ in range(steps):
            adversarial = adversarial + step_size * _gradient_sign(model, adversarial, labels)
            adversarial = torch.clamp(adversarial - x, -eps, eps).add(x).clamp(lower, upper)
    return adversarial


@torch.no_grad()
def attack_success_rate(model: nn.Module, adversarial: Tensor, labels: Tensor) -> float:
    """The fraction of ``adversarial`` images (N, ...) that ``model`` does not classify as
    ``labels`` (N,): on images it classified correctly before the attack, the attack's success."""
    with _EvalMode(model):
        predicted = model(adversarial).argmax(dim=1)
    return (predicted != labels).float().mean().item()
