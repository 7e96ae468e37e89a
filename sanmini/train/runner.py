"""A training run from its configuration to its checkpoints, and the evaluation of a checkpoint.

:func:`train`, in order:

1. check the data folder (and, with ``--check-images``, every image's header) and the batch size
   against the number of processes;
2. build the model (the same initial weights in every process: same seed), optionally from
   ``--weights``; load ``--resume``'s model, optimizer, scheduler, scaler and RNG states;
3. each epoch: train (DistributedDataParallel averages gradients over processes), share rank 0's
   batch-norm statistics, evaluate on each process's share of the val images, then on rank 0
   write ``last.pt`` (and ``best.pt`` when val top-1 improves) atomically and a ``log.csv`` row;
4. print a summary and return the numbers and the model.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..cpu_settings import has_bfloat16 as cpu_has_bfloat16
from ..data.folders import check_image_folder, check_images, eval_transform, image_folder, train_transform
from ..models import check_state_dict, create, load_pretrained
from . import checkpoint as ckpt
from .config import RECIPE_FIELDS, TrainConfig, parse_args
from .distributed import World, broadcast_buffers, gather, setup, teardown
from .engine import evaluate, train_one_epoch
from .recipe import SmoothedCrossEntropy, make_optimizer, make_scheduler, step_size
from .runlog import CSVLog, epoch_line, epoch_row, summary


def main(argv=None) -> dict:
    """``python -m sanmini.train ARGS``: parse, then train or evaluate (see :func:`run`)."""
    return run(parse_args(argv))


def run(config: TrainConfig) -> dict:
    """Join the processes (if under torchrun), then train, or evaluate ``--weights``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    world = setup(config.device)
    try:
        return evaluate_weights(config, world) if config.evaluate else train(config, world)
    finally:
        teardown(world)


# --- pieces ----------------------------------------------------------------------------------

def per_process(batch_size: int, world_size: int, flag: str = "--batch-size") -> int:
    """Each process's share of a batch counted over all processes."""
    if batch_size % world_size:
        raise ValueError(f"{flag} {batch_size} is not divisible by the number of processes, "
                         f"{world_size}: it is the batch over all of them; use a multiple of {world_size}")
    return batch_size // world_size


def build_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    """``sanmini.models.create`` of ``--model`` with ``--model-arg``s (and ``--recompute``, ``--fused``)."""
    overrides = {**config.model_args, **({"recompute": True} if config.recompute else {}),
                 **({"fused": True} if config.fused else {})}
    try:
        return create(config.model, num_classes=num_classes, **overrides)
    except (TypeError, ValueError) as err:
        args = " ".join(f"--model-arg {k}={v}" for k, v in config.model_args.items())
        raise ValueError(f"cannot build --model {config.model} {args}: {err}") from err


def resolve_num_classes(config: TrainConfig, classes: list[str], split: str) -> int:
    if config.num_classes is not None and config.num_classes != len(classes):
        raise ValueError(f"--num-classes {config.num_classes}, but {Path(config.data) / split} has "
                         f"{len(classes)} class folders; they must agree")
    return len(classes)


def check_smoothing(config: TrainConfig, num_classes: int) -> None:
    """The reference label smoothing spreads eps over the other classes: one class has none. Refused
    before the model is built, rather than at the first step (:class:`.recipe.SmoothedCrossEntropy`)."""
    if num_classes < 2 and config.label_smoothing > 0 and config.smoothing_style == "reference":
        raise ValueError(f"--label-smoothing {config.label_smoothing} spreads eps over the other classes, but "
                         f"{Path(config.data) / 'train'} has {num_classes} class folder: give "
                         f"--label-smoothing 0, or at least two classes")


def autocast_dtype(config: TrainConfig, world: World) -> torch.dtype | None:
    """``--amp``'s dtype, or None without ``--amp``. On a CPU without bfloat16 instructions torch
    converts bfloat16 in software, and a step under autocast to it takes several times as long as
    in float32 (5 to 14 times in bench/RESULTS.md): rank 0 warns, and the run goes on."""
    if not config.amp:
        return None
    dtype = getattr(torch, config.amp_dtype)
    if world.is_main and world.device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_bfloat16():
        tqdm.write("warning: --amp with bfloat16 on a CPU without bfloat16 instructions (AVX-512 BF16 "
                   "or AMX): torch converts bfloat16 in software here, and a step takes several times "
                   "as long as in float32; leave out --amp on this machine")
    return dtype


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    if config.channels_last != "auto":
        return config.channels_last == "on"
    return device.type == "cuda" and config.amp and config.model.startswith("resnet")


def _loader(dataset, batch_size: int, config: TrainConfig, world: World, sampler=None,
            drop_last: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=config.workers,
                      pin_memory=world.device.type == "cuda", drop_last=drop_last)


def check_image_headers(config: TrainConfig, world: World, *datasets) -> None:
    """``--check-images``: each process reads the headers of its share of the images (see
    :func:`sanmini.data.check_images`), so that a file that is no image fails before any step."""
    if not config.check_images:
        return
    started = time.perf_counter()
    paths = [path for dataset in datasets for path, _ in dataset.samples[world.rank::world.size]]
    count = check_images(paths)
    if world.is_main:
        share = f" (this process's share of {sum(len(d) for d in datasets)})" if world.size > 1 else ""
        tqdm.write(f"sanmini.train: read the headers of {count} images{share} in "
                   f"{time.perf_counter() - started:.1f} s; --no-check-images skips this")


def check_resumable(checkpoint, config: TrainConfig, path) -> None:
    """A ``--resume`` file must be a sanmini.train checkpoint of a run with the same recipe."""
    if not isinstance(checkpoint, dict) or not {"optimizer", "config", "epoch"} <= set(checkpoint):
        raise ValueError(f"--resume {path} is not a sanmini.train checkpoint (no optimizer state, "
                         f"epoch and config); to start training from its weights use --weights {path}")
    saved, now = checkpoint["config"], config.to_dict()
    differences = [f"--{name.replace('_', '-')} {saved.get(name)!r} there, {now[name]!r} here"
                   for name in RECIPE_FIELDS if saved.get(name) != now[name]]
    if differences:
        raise ValueError(f"--resume {path} was written by a run with other options: "
                         + "; ".join(differences) + ". Resume with the same options, or start a "
                         f"new run from its weights with --weights {path}")


# --- training --------------------------------------------------------------------------------

RUN_FILES = ("last.pt", "best.pt", "log.csv", "config.yaml")   # what a run writes to --out


def claim_out_dir(config: TrainConfig, world: World) -> None:
    """A new run never destroys an old one. An ``--out`` folder holding a run's files is refused
    unless the run continues it (``--resume``) or ``--overwrite`` is given; then rank 0 first moves
    the old files to ``OUT/replaced-DATE-TIME/`` and says so."""
    out = config.out_dir
    held = [name for name in RUN_FILES if (out / name).exists()]
    if not held or config.resume:
        return
    if not config.overwrite:
        raise ValueError(f"--out {out} holds a run ({', '.join(held)}): continue it with --resume "
                         f"{out / 'last.pt'}, choose another --out, or give --overwrite to start a new "
                         f"run there (the old files are first moved to {out / 'replaced-DATE-TIME'})")
    if world.is_main:
        moved = out / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
        moved.mkdir()
        for name in held:
            (out / name).rename(moved / name)
        tqdm.write(f"sanmini.train: --overwrite: the earlier run's {', '.join(held)} moved to {moved}")


def train(config: TrainConfig, world: World) -> dict:
    claim_out_dir(config, world)
    batch = per_process(config.batch_size, world.size)
    val_batch = per_process(config.val_batch_size or config.batch_size, world.size, "--val-batch-size")
    classes = check_image_folder(config.data)
    num_classes = resolve_num_classes(config, classes, "train")
    check_smoothing(config, num_classes)
    resumed = ckpt.load(config.resume) if config.resume else None
    if resumed is not None:
        check_resumable(resumed, config, config.resume)
        before = resumed["config"].get("data")
        if world.is_main and before and Path(before).resolve() != Path(config.data).resolve():
            tqdm.write(f"warning: --resume {config.resume} was trained on {before}; it continues on "
                       f"{config.data}")

    # The model: the same initial weights in every process (DDP also broadcasts rank 0's).
    ckpt.seed_everything(config.seed)
    model = build_model(config, num_classes)
    smallest = getattr(model, "min_input_size", 1)
    if config.image_size < smallest:
        raise ValueError(f"--image-size {config.image_size} is too small for --model {config.model} with "
                         f"these --model-arg footprints: it needs at least {smallest}")
    if config.weights:
        load_pretrained(model, config.weights)
    memory_format = torch.channels_last if use_channels_last(config, world.device) else torch.contiguous_format
    model = model.to(world.device, memory_format=memory_format)
    if world.device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # The data: each process a disjoint share of the shuffled training images, and of val.
    train_set = image_folder(config.data, "train",
                             train_transform(config.image_size, config.crop_min_scale, config.flip))
    val_set = image_folder(config.data, "val", eval_transform(config.image_size, config.val_resize))
    check_image_headers(config, world, train_set, val_set)
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=config.seed)
    train_loader = _loader(train_set, batch, config, world, sampler, drop_last=config.drop_last)
    val_loader = _loader(Subset(val_set, range(world.rank, len(val_set), world.size)), val_batch, config, world)
    if len(train_loader) == 0:
        raise ValueError(f"--drop-last with --batch-size {config.batch_size} leaves no batch: "
                         f"{Path(config.data) / 'train'} has {len(train_set)} images")

    # The recipe.
    criterion = SmoothedCrossEntropy(config.label_smoothing, config.smoothing_style)
    lr = step_size(config.lr, config.batch_size, config.lr_scaling)
    optimizer = make_optimizer(model, lr, config.momentum, config.weight_decay, config.decay_norm_and_bias)
    scheduler = make_scheduler(optimizer, len(train_loader), config.epochs, config.warmup_epochs,
                               config.schedule_per_step)
    amp_dtype = autocast_dtype(config, world)
    scaler = torch.amp.GradScaler(world.device.type, enabled=amp_dtype == torch.float16)

    start_epoch, best = 0, {"top1": -1.0, "top5": 0.0, "epoch": 0}
    ckpt.seed_everything(config.seed + world.rank)      # each process its own augmentation stream
    if resumed is not None:
        start_epoch, best = _restore(resumed, config, world, model, optimizer, scheduler, scaler)
    ddp = DistributedDataParallel(model, device_ids=[world.device] if world.device.type == "cuda" else None) \
        if world.distributed else model
    if config.compile:
        ddp = torch.compile(ddp, backend=config.compile_backend)   # training steps; `model` stays plain

    out = config.out_dir
    files = {"last checkpoint": out / "last.pt", "best checkpoint": out / "best.pt", "log": out / "log.csv"}
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        log = CSVLog(files["log"], keep_epochs=start_epoch)
        n_params = sum(p.numel() for p in model.parameters())
        tqdm.write(f"sanmini.train: {config.model}, {n_params:,} parameters, {num_classes} classes; "
                   f"{len(train_set)} training and {len(val_set)} val images in {config.data}; "
                   f"{world.size} process(es) on {world.device.type}, batch {config.batch_size} "
                   f"({batch} per process), step size {lr:.4g}; epochs {start_epoch + 1}..{config.epochs}"
                   + (f", resumed from {config.resume}" if resumed is not None else ""))

    rows = []
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)                        # a new shuffle each epoch, the same on resume
        lr_now = optimizer.param_groups[0]["lr"]
        train_stats = train_one_epoch(ddp, train_loader, criterion, optimizer, scheduler, scaler, world,
                                      amp_dtype, memory_format, f"epoch {epoch + 1}/{config.epochs}",
                                      config.progress)
        broadcast_buffers(world, model)                 # evaluate and save rank 0's statistics
        val_stats = evaluate(model, val_loader, world, amp_dtype, memory_format, progress=config.progress)
        rng = gather(world, ckpt.rng_state(world.device))
        row = epoch_row(epoch + 1, scheduler.last_epoch, lr_now, train_stats, val_stats)
        rows.append(row)
        improved = val_stats["top1"] > best["top1"]
        if improved:
            best = {"top1": val_stats["top1"], "top5": val_stats["top5"], "epoch": epoch + 1}
        if world.is_main:
            # last.pt last: a run killed before it is replaced redoes this epoch, exactly, and
            # rewrites the log row and best.pt it had written.
            log.write(row)
            state = {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                     "epoch": epoch + 1, "step": scheduler.last_epoch, "rng": rng,
                     "config": config.to_dict(), "best": best, "metrics": row}
            if improved:
                ckpt.atomic_save(state, files["best checkpoint"])
            ckpt.atomic_save(state, files["last checkpoint"])
            tqdm.write(epoch_line(row, config.epochs))
        if config.stop_after_epoch == epoch + 1 and epoch + 1 < config.epochs:
            if world.is_main:
                tqdm.write(f"stopped after epoch {epoch + 1} (--stop-after-epoch); continue with "
                           f"--resume {files['last checkpoint']}")
            break

    if world.is_main:
        print(summary(f"sanmini.train: {config.model} on {config.data}", rows, best, files, config.epochs),
              flush=True)
    return {"model": model, "history": rows, "best": best, "files": files}


def _restore(state: dict, config: TrainConfig, world: World, model, optimizer, scheduler, scaler):
    """Load a ``--resume`` checkpoint into the run; return (epochs done, best so far)."""
    check_state_dict(model, state["state_dict"], source=f"--resume {config.resume}")
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler.is_enabled() and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if len(rngs) == world.size:
        ckpt.set_rng_state(rngs[world.rank], world.device)
    else:   # another number of processes: continue, but not bit for bit
        ckpt.seed_everything(config.seed + world.rank + 1000 * state["epoch"])
        if world.is_main:
            tqdm.write(f"warning: --resume {config.resume} was written by {len(rngs)} processes, this "
                       f"run has {world.size}: augmentation continues from new seeds, not exactly")
    return state["epoch"], state["best"]


# --- evaluation ------------------------------------------------------------------------------

def evaluate_weights(config: TrainConfig, world: World) -> dict:
    """``--evaluate --weights PATH``: top-1 and top-5 of a checkpoint on ``DATA/val``."""
    val_batch = per_process(config.val_batch_size or config.batch_size, world.size, "--val-batch-size")
    classes = check_image_folder(config.data, splits="val")
    model = build_model(config, resolve_num_classes(config, classes, "val"))
    load_pretrained(model, config.weights)          # a clear error for another model's weights
    memory_format = torch.channels_last if use_channels_last(config, world.device) else torch.contiguous_format
    model = model.to(world.device, memory_format=memory_format)
    val_set = image_folder(config.data, "val", eval_transform(config.image_size, config.val_resize))
    check_image_headers(config, world, val_set)
    loader = _loader(Subset(val_set, range(world.rank, len(val_set), world.size)), val_batch, config, world)
    amp_dtype = autocast_dtype(config, world)
    stats = evaluate(model, loader, world, amp_dtype, memory_format, progress=config.progress)
    if world.is_main:
        print(f"sanmini.train --evaluate: {config.model} with {config.weights} on "
              f"{Path(config.data) / 'val'} ({stats['images']} images, {len(classes)} classes): "
              f"top-1 {stats['top1']:.2f}%, top-5 {stats['top5']:.2f}%, loss {stats['loss']:.4f}, "
              f"{stats['images_per_s']:.1f} images/s", flush=True)
    return {"model": model, "val": stats}
