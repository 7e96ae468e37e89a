"""The small task every experiment trains on, and what is measured on it.

scikit-learn's digits at 64 x 64 (:func:`sanmini.data.digits`), made harder than the full dataset
in a stated way so that variants can be told apart: only ``TASK.per_class`` training images of each
digit (the first ones of the stratified training split), no augmentation, and a short run (SGD
with the paper's recipe, a cosine over ``TASK.epochs`` epochs). Validation uses the whole
stratified validation split (360 images), which no run trains on.

Measured on every trained network: val top-1 on the upright digits and, zero-shot (the training
never saw them), on the digits rotated by 90 and 180 degrees, flipped upside down and mirrored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Task:
    """The training setup shared by every run of the sweep."""
    image_size: int = 64         # the smallest input of a SAN10 with 3 x 3 footprints (min_input_size)
    per_class: int = 30          # training images of each digit (of 1,437 in the full training split)
    epochs: int = 16
    batch_size: int = 32
    lr: float = 0.4              # per 256 images: 0.05 at batch 32, as chapter 7's digits runs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    val_per_class: int | None = None   # None: the whole validation split (36 of each digit); fewer for tests


TASK = Task()

# Zero-shot views of the validation digits: (N, C, H, W) -> (N, C, H, W).
VIEWS = {
    "upright": lambda x: x,
    "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),      # a quarter turn, counter-clockwise
    "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "upside_down": lambda x: torch.flip(x, dims=(-2,)),       # flipped top to bottom
    "mirrored": lambda x: torch.flip(x, dims=(-1,)),          # flipped left to right
}


def training_subset(dataset, per_class: int):
    """The first ``per_class`` images of each class of ``dataset`` (a TensorDataset of digits):
    images (per_class * 10, 3, S, S), labels (per_class * 10,), in dataset order."""
    images, labels = dataset.tensors
    counts = torch.bincount(labels, minlength=len(dataset.classes))
    if per_class < 1 or per_class > int(counts.min()):
        raise ValueError(f"per_class must be between 1 and {int(counts.min())} (the rarest digit's "
                         f"training images), got {per_class}")
    keep = torch.cat([(labels == c).nonzero()[:per_class, 0] for c in range(len(dataset.classes))]).sort().values
    return images[keep], labels[keep]


def load(task: Task = TASK, normalize: bool = True):
    """``(train_images, train_labels), (val_images, val_labels)`` of the task, normalised with
    ImageNet's mean and std (or in [0, 1] with ``normalize=False``)."""
    from ..data import digits

    train = digits("train", image_size=task.image_size, normalize=normalize)
    val = digits("val", image_size=task.image_size, normalize=normalize)
    return (training_subset(train, task.per_class),
            val.tensors if task.val_per_class is None else training_subset(val, task.val_per_class))


def fit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, task: Task = TASK) -> float:
    """Train ``model`` in place on (images (N, 3, S, S), labels (N,)) with the paper's recipe
    (SGD, momentum, weight decay on every parameter, label smoothing, cosine step size per epoch);
    ``seed`` fixes the order of the batches. Returns the seconds it took."""
    from ..train import SmoothedCrossEntropy, make_optimizer, make_scheduler, step_size

    steps_per_epoch = -(-len(images) // task.batch_size)
    optimizer = make_optimizer(model, step_size(task.lr, task.batch_size), task.momentum, task.weight_decay)
    scheduler = make_scheduler(optimizer, steps_per_epoch, task.epochs)
    criterion = SmoothedCrossEntropy(task.label_smoothing)
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(task.epochs):
        for batch in torch.randperm(len(images), generator=order).split(task.batch_size):
            loss = criterion(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 120) -> torch.Tensor:
    """Class predictions (N,) of ``model`` in evaluation mode for images (N, 3, S, S)."""
    model.eval()
    return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def view_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, views=None) -> dict:
    """Top-1 (%) on each of ``views`` (names of :data:`VIEWS`, default all) of the validation
    images (N, 3, S, S): ``{"top1_upright": ..., "top1_rot90": ..., ...}``."""
    unknown = set(views or ()) - set(VIEWS)
    if unknown:
        raise ValueError(f"views must be names of {tuple(VIEWS)}, got {sorted(unknown)}")
    return {f"top1_{name}": 100.0 * float((predict(model, VIEWS[name](images)) == labels).float().mean())
            for name in (views or VIEWS)}
