"""Adversarial attacks, to measure how robust a classifier is (Zhao et al., CVPR 2020, probe the
robustness of SAN and ResNet models with adversarial attacks).

Both attacks are untargeted and bounded in the L-infinity norm: each pixel of an image ``x`` may move
by at most ``eps``, and the result stays in the valid pixel range ``[lower, upper]``.

* :func:`fgsm`, the fast gradient sign method (Goodfellow et al., 2015): one step of size ``eps``
  along the sign of the gradient of the loss, ``x + eps * sign(grad_x L(f(x), y))``;
* :func:`pgd`, projected gradient descent (Madry et al., 2018): from a uniformly random start in the
  ``eps`` ball (or from ``x``), ``steps`` steps of size ``step_size`` along the sign of the
  gradient, each followed by the projection back onto the ball and the pixel range; ``restarts``
  runs from new random starts, and an image counts as fooled if any iterate of any run fooled
  the model (the first such iterate is returned). One step of size ``eps`` from ``x``, keeping
  the last iterate, is FGSM.

:class:`Upsampled` attacks a network that sees upsampled images in the data's own pixels.

The model maps images in ``[lower, upper]`` to logits; a model trained on normalised images is
attacked through :class:`Normalized`, so that ``eps`` is measured in pixels. The model is run in
evaluation mode during the attack (batch-norm statistics are not touched) and put back as it was:
every submodule in its own mode again (a frozen batch norm stays in eval, an MC-dropout layer in
train), its parameters and their ``.grad`` untouched. Gradients are enabled inside the attacks, so
they may be called under ``torch.no_grad()`` or ``torch.inference_mode()``.

Refused with a ``ValueError`` naming the argument, before any pass through the model: images that
are not a floating-point tensor (N, ...) with N >= 1, or hold NaN or infinity, or leave
``[lower, upper]``, or differ from the model's parameters in dtype or device; labels that are not
an integer tensor (N,) on the images' device, or lie outside ``0 .. classes - 1`` (a label of
-100 would be cross-entropy's ``ignore_index``: its image would come back unperturbed; ``classes``
is read off the model's logits, (N, classes), on the first pass).
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
        mean, std: per-channel sequences of length C (e.g. ``sanmini.data.IMAGENET_MEAN``), finite,
            of one length, every std > 0 (a std of 0 would divide by zero, and a negative one
            flip the channel). An image with another number of channels than C is refused.
    """

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        mean, std = _channels("mean", mean), _channels("std", std)
        if len(mean) != len(std):
            raise ValueError(f"mean and std must give one value per channel each, got {len(mean)} "
                             f"means and {len(std)} stds")
        if (std <= 0).any():
            raise ValueError(f"std must be > 0 in every channel, got ({', '.join(f'{v:g}' for v in std.tolist())})")
        self.model = model
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"Normalized has a mean and std for {self.mean.shape[1]} channels: x must "
                             f"be (N, {self.mean.shape[1]}, H, W), got shape {tuple(x.shape)}")
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _channels(name: str, values) -> Tensor:
    """A per-channel sequence -> a finite float32 tensor (C,), or a ValueError naming it."""
    try:
        t = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a sequence of numbers, one per channel, got {values!r}") from None
    if t.ndim != 1 or t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be a sequence of finite numbers, one per channel, got {values!r}")
    return t


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _describe(t) -> str:
    if not isinstance(t, Tensor):
        return type(t).__name__
    return f"{t.dtype} of shape {tuple(t.shape)} on {t.device}"


def _check_batch(model: nn.Module, images: Tensor, labels: Tensor) -> None:
    """The checks the attacks and :func:`attack_success_rate` share (see the module's docstring)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(images, Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor (N, ...), got {_describe(images)}")
    if images.shape[0] == 0:
        raise ValueError(f"images must hold at least one image, got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"images must be finite, got {int((~torch.isfinite(images)).sum())} NaN or "
                         f"infinite values")
    if (not isinstance(labels, Tensor) or labels.shape != images.shape[:1] or labels.is_floating_point()
            or labels.is_complex() or labels.dtype == torch.bool):
        raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), one class index "
                         f"per image, got {_describe(labels)}")
    if labels.device != images.device:
        raise ValueError(f"labels must be on the images' device {images.device}, got {labels.device}")
    if labels.min() < 0:
        raise ValueError(f"labels must be class indices >= 0, got {labels.min().item()} (a label of -100 "
                         f"is not skipped here: every image is attacked)")
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is not None and (parameter.dtype != images.dtype or parameter.device != images.device):
        raise ValueError(f"images must have the model's dtype and device, {parameter.dtype} on "
                         f"{parameter.device}, got {images.dtype} on {images.device}: convert one with "
                         f".to(...)")


def _check_classes(logits: Tensor, labels: Tensor) -> None:
    """The model's logits must be (N, classes), and every label one of the classes."""
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"the model must return logits (N, classes) = ({labels.shape[0]}, classes), "
                         f"got shape {tuple(logits.shape)}")
    if labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class indices below the model's {logits.shape[1]} classes, "
                         f"got {labels.max().item()}")


def _check(model: nn.Module, images: Tensor, labels: Tensor, eps: float, lower: float, upper: float) -> None:
    for name, value in (("lower", lower), ("upper", upper)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    _check_batch(model, images, labels)
    _check_size("eps", eps)
    if not lower < upper:
        raise ValueError(f"lower must be below upper, got lower={lower!r}, upper={upper!r}")
    if images.min() < lower or images.max() > upper:
        raise ValueError(f"images must lie in [lower, upper] = [{lower}, {upper}], got values from "
                         f"{images.min().item():.4g} to {images.max().item():.4g} (attack the pixels, "
                         f"and put the normalisation in the model: sanmini.robustness.Normalized)")


def _gradient_sign(model: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
    """sign of d/dx of the mean cross-entropy of ``model(x)`` against ``labels``."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    _check_classes(logits, labels)
    loss = F.cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


class _EvalMode:
    """The model in evaluation mode for the block, and every submodule back in its own mode after
    (``model.train(flag)`` alone would also set the submodules the user had put in another mode)."""

    def __init__(self, model: nn.Module):
        self.model, self.modes = model, [(m, m.training) for m in model.modules()]

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        for module, training in self.modes:
            module.training = training


class _Gradients:
    """Gradients recorded in the block, even under ``torch.no_grad()`` or ``torch.inference_mode()``."""

    def __enter__(self):
        self.modes = (torch.inference_mode(False), torch.enable_grad())
        for mode in self.modes:
            mode.__enter__()

    def __exit__(self, *exc):
        for mode in reversed(self.modes):
            mode.__exit__(*exc)


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

    Refused: see the module's docstring (images, labels, dtype, device); ``eps`` not a finite
    number >= 0; ``lower`` not below ``upper``.
    """
    _check(model, images, labels, eps, lower, upper)
    with _Gradients(), _EvalMode(model):
        x, labels = images.detach().clone(), labels.clone()     # not inference tensors
        return (x + eps * _gradient_sign(model, x, labels)).clamp(lower, upper)


def pgd(model: nn.Module, images: Tensor, labels: Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, lower: float = 0.0,
        upper: float = 1.0, generator: torch.Generator | None = None, restarts: int = 1,
        keep: str = "first_fooling") -> Tensor:
    """Projected gradient descent in the L-infinity ball of radius ``eps`` (untargeted), with
    random restarts, success counted at any iterate.

    ``x_0 = clamp(x + U(-eps, eps), lower, upper)`` (or ``x`` without ``random_start``), then
    ``steps`` times ``x_{t+1} = P(x_t + step_size * sign(grad CE(model(x_t), y)))``, where ``P``
    clamps to ``[x - eps, x + eps]`` and then to ``[lower, upper]``. With ``restarts`` > 1 the
    whole run is repeated from a new random start for the images no earlier run fooled.

    With ``keep="first_fooling"`` (the default) an image's result is the first iterate
    ``x_0 .. x_steps``, over the restarts in order, that the model misclassifies: an attack that
    fools the model at step 3 and wanders back to the true class by the last step still counts
    (a last iterate alone under-counts success, most at large ``eps``). An image never fooled
    gets the last iterate of the last restart. ``keep="last"`` returns the last iterate of the
    last restart for every image (torchattacks' ``PGD``; with ``restarts=1``, Madry et al.'s).

    Args:
        model, images, labels, eps, lower, upper: as for :func:`fgsm`.
        steps: gradient steps per restart (an int >= 1).
        step_size: the size of each step (default ``2.5 * eps / steps``, so that the steps can
            cross the ball and come back: Madry et al.'s choice).
        random_start: start at a uniformly random point of the ball (required for ``restarts``
            > 1: restarts from ``x`` would repeat the same deterministic run).
        generator: for the random starts (default: torch's global generator, as torchattacks).
        restarts: runs from independent random starts (an int >= 1).
        keep: ``"first_fooling"`` or ``"last"``, see above.

    Returns:
        (N, C, H, W), detached: every pixel within ``eps`` of ``images`` and in [lower, upper].

    Refused: as for :func:`fgsm`, and ``steps`` or ``restarts`` not an int >= 1, ``step_size``
    not a finite number >= 0, ``random_start`` not a bool, ``restarts`` > 1 without a random
    start, ``keep`` not one of its two words, ``generator`` not a ``torch.Generator`` or None.
    """
    _check(model, images, labels, eps, lower, upper)
    for name, value in (("steps", steps), ("restarts", restarts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    _check_size("step_size", step_size)
    if not isinstance(random_start, bool):
        raise ValueError(f"random_start must be True or False, got {random_start!r}")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} needs random_start=True: every run from the image itself "
                         f"is the same run")
    if keep not in ("first_fooling", "last"):
        raise ValueError(f"keep must be 'first_fooling' or 'last', got {keep!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    first = keep == "first_fooling"
    with _Gradients(), _EvalMode(model):
        x, labels = images.detach().clone(), labels.clone()     # not inference tensors
        result = x.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(restarts):
            todo = (~fooled).nonzero()[:, 0] if first else torch.arange(len(x), device=x.device)
            if len(todo) == 0:
                break
            x0, y0 = x[todo], labels[todo]
            adversarial = x0.clone()
            if random_start:
                noise = torch.empty_like(x0).uniform_(-eps, eps, generator=generator)
                adversarial = (adversarial + noise).clamp(lower, upper)
            done = torch.zeros(len(todo), dtype=torch.bool, device=x.device)   # fooled in this run
            for step in range(steps + 1):
                if step == steps and not first:
                    break
                candidate = adversarial.detach().requires_grad_(True)
                logits = model(candidate)
                _check_classes(logits, y0)
                if first:                             # x_step fools the model: keep the first such
                    new = (logits.detach().argmax(1) != y0) & ~done
                    result[todo[new]] = adversarial[new].detach()
                    done |= new
                if step == steps:
                    break
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y0), candidate)
                adversarial = adversarial.detach() + step_size * grad.sign()
                adversarial = torch.clamp(adversarial - x0, -eps, eps).add(x0).clamp(lower, upper)
            rest = ~done
            result[todo[rest]] = adversarial[rest].detach()
            fooled[todo[done]] = True
    return result


class Upsampled(nn.Module):
    """``model(interpolate(x, size))``: a network that sees images upsampled from the data's own
    resolution, attacked in the data's pixels.

    An attack on ``Upsampled(model, 64)`` with 8 x 8 images perturbs the 64 pixels of the data,
    each within ``eps``; the network sees the perturbation upsampled, as it sees the image (an
    attack on the 64 x 64 input instead could change detail finer than any image of the data has).

    Args:
        model: the classifier of (N, C, size, size) images.
        size: the side the network sees (an int >= 1, or (height, width)).
        mode: ``torch.nn.functional.interpolate``'s mode (default ``"bilinear"``, with
            ``align_corners=False``: :func:`sanmini.data.digits`' upsampling, so that
            ``Upsampled(model, 64)(digits at 8)`` equals ``model(digits at 64)``).
    """

    def __init__(self, model: nn.Module, size, mode: str = "bilinear"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        sizes = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
        if (not isinstance(sizes, (tuple, list)) or len(sizes) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
            raise ValueError(f"size must be an int >= 1 or (height, width) of such ints, got {size!r}")
        if mode not in ("nearest", "bilinear", "bicubic", "area", "nearest-exact"):
            raise ValueError(f"mode must be one of nearest, bilinear, bicubic, area, nearest-exact, got {mode!r}")
        self.model, self.size, self.mode = model, tuple(sizes), mode

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"Upsampled takes images (N, C, H, W), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.size:
            corners = {"align_corners": False} if self.mode in ("bilinear", "bicubic") else {}
            x = F.interpolate(x, size=self.size, mode=self.mode, **corners)
        return self.model(x)


@torch.no_grad()
def attack_success_rate(model: nn.Module, adversarial: Tensor, labels: Tensor) -> float:
    """The fraction of ``adversarial`` images (N, ...) that ``model`` does not classify as
    ``labels`` (N,): on images it classified correctly before the attack, the attack's success.

    Refused, as for :func:`fgsm`: an empty batch (the rate of nothing), images that are not finite
    floats of the model's dtype, labels that are not an integer tensor (N,) of class indices of the
    model (labels (N, 1) or (1,) would broadcast against the predictions and count wrongly).
    """
    _check_batch(model, adversarial, labels)
    with _EvalMode(model):
        logits = model(adversarial)
    _check_classes(logits, labels)
    return (logits.argmax(dim=1) != labels).float().mean().item()
