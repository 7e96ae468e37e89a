"""The small tasks the experiments train on, and what is measured on them.

Two tasks: :data:`TEXTURES`, the fair sweep's (recorded in ``book/results/experiments.csv``):
crops of photographs and textures at their own resolution (:mod:`sanmini.data.textures`), a
training set redrawn at every seed, each network's step size chosen on a holdout part of the
training pool (:func:`load_tuning`), six views (with a three-quarter turn); and :data:`TASK`, the
digits of the first sweep (``book/results/digits-first-sweep.csv``). A :class:`Task`'s ``data``
names its images.

The first sweep's task:

scikit-learn's digits at 64 x 64 (:func:`sanmini.data.digits`), made harder than the full dataset
in a stated way so that variants can be told apart: only ``TASK.per_class`` training images of each
digit (the first ones of the stratified training split), no augmentation, and a short run (SGD
with the paper's recipe, a cosine over ``TASK.epochs`` epochs). Validation uses the whole
stratified validation split (360 images), which no run trains on.

Measured on every trained network: the loss and top-1 of its last epoch of training (read off the
training's own passes), val top-1 on the upright digits and, zero-shot (the training never saw
them), on the digits rotated by 90 and 180 degrees, flipped upside down and mirrored.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Task:
    """The training setup shared by every run of a sweep.

    ``data``: ``"digits"`` (:func:`sanmini.data.digits`, ``per_class`` images of each digit) or
    ``"textures"`` (:func:`sanmini.data.textures.textures`, ``per_class`` crops of each source,
    ``image_size`` pixels, native resolution). ``views``: names of :data:`ALL_VIEWS` measured
    zero-shot; ``per_class_views``: classes whose top-1 is also recorded per view (a class that a
    view turns into another, such as the digits 6 and 9 under a half turn). ``lr_grid``: step
    sizes per 256 images to choose from on the holdout split (:func:`load_tuning`); empty: ``lr``
    for every network. ``redraw``: each seed draws its own training set (else the first
    ``per_class`` of each class, the same at every seed). ``tune_seed``: the seed of the tuning
    runs' data, weights and batch order."""
    image_size: int = 64         # the smallest input of a SAN10 with 3 x 3 footprints (min_input_size)
    per_class: int = 30          # training images of each digit (of 1,437 in the full training split)
    epochs: int = 16
    batch_size: int = 32
    lr: float = 0.4              # per 256 images: 0.05 at batch 32, as chapter 7's digits runs
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    val_per_class: int | None = None   # None: the whole validation split (36 of each digit); fewer for tests
    data: str = "digits"
    views: tuple = ("upright", "rot90", "rot180", "upside_down", "mirrored")
    per_class_views: tuple = ()
    lr_grid: tuple = ()
    redraw: bool = False
    tune_seed: int = 0
    chosen: tuple = ()           # ((config key, lr), ...): the step sizes the tuning chose (set by the sweep)

    @property
    def num_classes(self) -> int:
        if self.data == "textures":
            from ..data.textures import SOURCES

            return len(SOURCES)
        return 10

    def lr_of(self, key: str) -> float:
        """The step size (per 256 images) a network trains at: the one chosen for it (``key``, a
        Config's key) if the tuning chose one, else ``lr``."""
        return dict(self.chosen).get(key, self.lr)

    def steps(self) -> int:
        """Training steps of one run: ``epochs`` passes over ``per_class`` images of each class."""
        return self.epochs * -(-self.per_class * self.num_classes // self.batch_size)


TASK = Task()
"""The task of the first sweep, recorded in ``book/results/digits-first-sweep.csv``."""

# Zero-shot views of the validation digits: (N, C, H, W) -> (N, C, H, W).
VIEWS = {
    "upright": lambda x: x,
    "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),      # a quarter turn, counter-clockwise
    "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "upside_down": lambda x: torch.flip(x, dims=(-2,)),       # flipped top to bottom
    "mirrored": lambda x: torch.flip(x, dims=(-1,)),          # flipped left to right
}
"""The views of the first sweep; :data:`ALL_VIEWS` adds the three-quarter turn of the fair sweep."""

ALL_VIEWS = {**VIEWS, "rot270": lambda x: torch.rot90(x, 3, dims=(-2, -1))}    # three quarters, counter-clockwise
"""Every view a :class:`Task` may measure: those of :data:`VIEWS` and the three-quarter turn."""


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


TEXTURES = Task(image_size=64, per_class=40, epochs=20, batch_size=32, lr=0.2, val_per_class=40,
                data="textures", views=tuple(ALL_VIEWS), lr_grid=(0.1, 0.2, 0.4, 0.8), redraw=True)
"""The fair sweep's task, 12 sources (:data:`sanmini.data.textures.SOURCES`) with 40 crops
of 64 x 64 native pixels of each to train on (redrawn at every seed), 40 fixed validation crops
of each; no augmentation for any network; 20 epochs (300 steps of 32); the step size chosen from
0.1, 0.2, 0.4, 0.8 per 256 images (the first tuning runs, on 0.1 to 0.4, put both ResNets'
best at 0.4, the grid's edge, so 0.8 was added; tests/test_experiments.py checks that every
recorded choice lies inside the grid); every view of :data:`ALL_VIEWS`. No class is changed by a view (a
turned crop of brick is brick), so no per-class views.

Why 20 epochs: trial runs at seed 0 and step size 0.2 (2026-12-06, one thread each): SAN10
pairwise's last-epoch training loss was 0.77 (top-1 94%) after 12 epochs and 0.66 (97%) after 24,
its validation top-1 70.0% and 73.3%; ResNet26's 0.68 (98%) and 0.60 (100%), its validation
top-1 67.5% and 67.3%. Twelve epochs stopped the SAN before it had learned what it can, which
would favour the ResNet; 24 cost more than the sweep's 240 minutes hold; every run's last-epoch
training loss and top-1 are recorded to say how far each got."""


def _check_task(task) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a sanmini.experiments.Task, got {type(task).__name__}")
    if task.data not in ("digits", "textures"):
        raise ValueError(f"task.data must be 'digits' or 'textures', got {task.data!r}")
    unknown = set(task.views) - set(ALL_VIEWS)
    if unknown:
        raise ValueError(f"task.views must be names of {tuple(ALL_VIEWS)}, got {sorted(unknown)}")


def _drawn(images, labels, per_class: int, classes: int, seed: int):
    """``per_class`` images of each class drawn at random from ``seed``, in dataset order."""
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(classes):
        index = (labels == c).nonzero()[:, 0]
        if per_class > len(index):
            raise ValueError(f"per_class must be between 1 and {len(index)} (class {c}'s images), got {per_class}")
        keep.append(index[torch.randperm(len(index), generator=generator)[:per_class]])
    keep = torch.cat(keep).sort().values
    return images[keep], labels[keep]


def load(task: Task = TASK, normalize: bool = True, seed: int | None = None):
    """``(train_images, train_labels), (val_images, val_labels)`` of the task, normalised with
    ImageNet's mean and std (or in [0, 1] with ``normalize=False``).

    With ``task.redraw`` the training set is drawn from ``seed`` (required then): digits, a random
    ``per_class`` of each digit's training images; textures, crops at random positions of the
    training band. Validation images are the same at every seed."""
    _check_task(task)
    if task.redraw and seed is None:
        raise ValueError("seed must be given for a task that redraws its training set at every seed (task.redraw)")
    if task.data == "textures":
        from ..data.textures import textures

        train = textures("pool", task.per_class, task.image_size, seed=seed, normalize=normalize)
        val = textures("val", task.val_per_class or task.per_class, task.image_size, normalize=normalize)
        return train.tensors, val.tensors
    from ..data import digits

    train = digits("train", image_size=task.image_size, normalize=normalize)
    val = digits("val", image_size=task.image_size, normalize=normalize)
    chosen = (_drawn(*train.tensors, task.per_class, 10, seed) if task.redraw
              else training_subset(train, task.per_class))
    return chosen, val.tensors if task.val_per_class is None else training_subset(val, task.val_per_class)


def load_tuning(task: Task, normalize: bool = True):
    """``(tune_images, tune_labels), (holdout_images, holdout_labels)``: for choosing a step size,
    both from the training pool, never from the validation images. Textures: crops of the pool's
    tuning and holdout bands, a crop's width apart (:func:`sanmini.data.textures.bands`); digits:
    the training split's images, a quarter of each digit held out (drawn from ``task.tune_seed``).
    The tuning set has ``task.per_class`` images of each class, as a training run."""
    _check_task(task)
    if task.data == "textures":
        from ..data.textures import textures

        tune = textures("tune", task.per_class, task.image_size, seed=task.tune_seed, normalize=normalize)
        holdout = textures("holdout", max(1, task.val_per_class or task.per_class), task.image_size,
                           seed=task.tune_seed, normalize=normalize)
        return tune.tensors, holdout.tensors
    from ..data import digits

    images, labels = digits("train", image_size=task.image_size, normalize=normalize).tensors
    generator = torch.Generator().manual_seed(task.tune_seed)
    tune, holdout = [], []
    for c in range(10):
        index = (labels == c).nonzero()[:, 0]
        index = index[torch.randperm(len(index), generator=generator)]
        held = len(index) // 4
        holdout.append(index[:held])
        tune.append(index[held:held + task.per_class])
    tune, holdout = torch.cat(tune).sort().values, torch.cat(holdout).sort().values
    return (images[tune], labels[tune]), (images[holdout], labels[holdout])


def fit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int, task: Task = TASK,
        lr: float | None = None, curve: bool = False) -> dict:
    """Train ``model`` in place on (images (N, 3, S, S), labels (N,)) with the paper's recipe
    (SGD, momentum, weight decay on every parameter, label smoothing, cosine step size per epoch);
    ``seed`` fixes the order of the batches. Returns ``{"train_seconds": ..., "train_loss": ...,
    "train_top1": ...}``: the seconds it took, and the mean loss (label-smoothed, as trained on)
    and top-1 (%) over the images of the last epoch, each as the network was on its batch (in
    training mode, before that batch's step): read off the training's own forward passes.
    ``lr``: the step size per 256 images (default ``task.lr``). With ``curve``, every epoch's
    too: ``train_loss_epoch<k>`` and ``train_top1_epoch<k>``, k = 1 .. ``task.epochs`` (the
    last equal to ``train_loss`` and ``train_top1``)."""
    from ..train import SmoothedCrossEntropy, make_optimizer, make_scheduler, step_size

    steps_per_epoch = -(-len(images) // task.batch_size)
    lr = task.lr if lr is None else lr
    optimizer = make_optimizer(model, step_size(lr, task.batch_size), task.momentum, task.weight_decay)
    scheduler = make_scheduler(optimizer, steps_per_epoch, task.epochs)
    criterion = SmoothedCrossEntropy(task.label_smoothing)
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    history = {}
    for epoch in range(1, task.epochs + 1):
        loss_sum, correct = 0.0, 0                     # over this epoch's images
        for batch in torch.randperm(len(images), generator=order).split(task.batch_size):
            logits = model(images[batch])
            loss = criterion(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(batch)
            correct += int((logits.detach().argmax(1) == labels[batch]).sum())
        history[f"train_loss_epoch{epoch}"] = loss_sum / len(images)
        history[f"train_top1_epoch{epoch}"] = 100.0 * correct / len(images)
    out = {"train_seconds": time.perf_counter() - start, "train_loss": history[f"train_loss_epoch{task.epochs}"],
           "train_top1": history[f"train_top1_epoch{task.epochs}"]}
    return {**out, **history} if curve else out


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 120) -> torch.Tensor:
    """Class predictions (N,) of ``model`` in evaluation mode for images (N, 3, S, S)."""
    model.eval()
    return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def view_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, views=None,
                    per_class=()) -> dict:
    """Top-1 (%) on each of ``views`` (names of :data:`ALL_VIEWS`, default those of
    :data:`VIEWS`) of the validation images (N, 3, S, S): ``{"top1_upright": ..., "top1_rot90":
    ..., ...}``, and for each class ``c`` of ``per_class``, ``top1_<view>_class<c>``: the top-1 on
    that class's images alone (refused: a class without images)."""
    unknown = set(views or ()) - set(ALL_VIEWS)
    if unknown:
        raise ValueError(f"views must be names of {tuple(ALL_VIEWS)}, got {sorted(unknown)}")
    missing = [c for c in per_class if not (labels == c).any()]
    if missing:
        raise ValueError(f"per_class must name classes of the validation images, got {missing} (no images)")
    out = {}
    for name in views or VIEWS:
        right = predict(model, ALL_VIEWS[name](images)) == labels
        out[f"top1_{name}"] = 100.0 * float(right.float().mean())
        for c in per_class:
            out[f"top1_{name}_class{c}"] = 100.0 * float(right[labels == c].float().mean())
    return out
