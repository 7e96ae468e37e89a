"""One epoch of training, one pass of evaluation: the inner loops, with accuracy and throughput.

Both loops keep their running sums on the device (no host synchronisation per iteration), sum
them over processes once at the end, and return plain numbers::

    loss        mean loss per image (training: the smoothed loss; evaluation: plain cross-entropy)
    top1, top5  percent of images whose class is among the 1 (5) largest logits
    images      images seen, all processes together
    seconds, images_per_s, peak_memory_mib
"""
from __future__ import annotations

import math
import re
import sys
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .distributed import World, all_max, all_sum


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """For each k, how many rows of ``logits`` (N, K) have ``target`` (N,) among their k largest
    entries (k larger than K counts every row). Returns 0-dim tensors on the logits' device."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices   # (N, k_max)
    hit = top == target[:, None]                                        # (N, k_max)
    return [hit[:, :k].any(dim=1).sum() for k in ks]


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory in MiB: CUDA memory allocated by torch on a GPU (since the last reset), the
    process's peak resident set size on a CPU (since it started)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:   # Windows
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, KiB on Linux


_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def worker_message(err: BaseException) -> str | None:
    """The message of the exception a DataLoader worker raised, from the one the loader re-raises
    in the main process (``Caught ValueError in DataLoader worker process 0. Original Traceback
    ...`` and the worker's whole traceback); None for an exception that did not come from a worker."""
    text = str(err)
    if not _WORKER_ERROR.match(text):
        return None
    lines = text.rstrip("\n").splitlines()
    # the worker's exception is the last line at the left margin that starts no traceback
    start = max(i for i, line in enumerate(lines) if line[:1] not in ("", " ") and not line.startswith("Traceback"))
    return re.sub(r"^[\w.]+: ", "", "\n".join(lines[start:]), count=1)


def batches(loader):
    """The batches of ``loader``; an error in a worker process (``--workers`` > 0) is raised as the
    worker raised it, one line (e.g. ``cannot read the image PATH: ...``), as ``--workers 0`` gives."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:                                  # noqa: BLE001 - re-raised
            message = worker_message(err)
            if message is None:
                raise
            try:
                unwrapped = type(err)(message)
            except Exception:                                     # noqa: BLE001 - an odd constructor
                raise err from None
            raise unwrapped from None
        yield batch


def _summarise(world: World, sums: torch.Tensor, start: float) -> dict:
    loss, top1, top5, images = all_sum(world, sums.tolist())
    seconds = all_max(world, time.perf_counter() - start)
    return {"loss": loss / max(images, 1), "top1": 100 * top1 / max(images, 1),
            "top5": 100 * top5 / max(images, 1), "images": int(images), "seconds": seconds,
            "images_per_s": images / seconds, "peak_memory_mib": all_max(world, peak_memory_mib(world.device))}


def train_one_epoch(model, loader, criterion, optimizer, scheduler, scaler, world: World,
                    amp_dtype: torch.dtype | None = None, memory_format=torch.contiguous_format,
                    desc: str = "train", progress: bool = True) -> dict:
    """One pass over ``loader``: images (B, 3, S, S), targets (B,) -> one SGD step per batch.

    ``model`` may be wrapped in DistributedDataParallel (its backward averages the gradients
    over processes); ``scheduler`` is stepped every iteration; ``scaler`` is a GradScaler,
    enabled for float16.
    """
    model.train()
    device = world.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sums = torch.zeros(4, dtype=torch.float64, device=device)   # loss * n, top-1, top-5, n
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True, disable=not (progress and world.is_main))
    for i, (images, target) in enumerate(batches(bar)):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)                                # (B, K)
            loss = criterion(logits, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        with torch.no_grad():
            top1, top5 = topk_correct(logits, target)
            sums[0] += loss.detach().double() * len(target)
            sums[1] += top1
            sums[2] += top5
            sums[3] += len(target)
        if not bar.disable and i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4g}")
    stats = _summarise(world, sums, start)
    if not math.isfinite(stats["loss"]):
        raise FloatingPointError(f"training diverged: the mean loss of {desc} is {stats['loss']}; "
                                 f"try a smaller --lr (or --amp-dtype bfloat16)")
    return stats


@torch.no_grad()
def evaluate(model, loader, world: World, amp_dtype: torch.dtype | None = None,
             memory_format=torch.contiguous_format, desc: str = "val", progress: bool = True) -> dict:
    """Cross-entropy, top-1 and top-5 over ``loader``, each process on its own share of it."""
    model.eval()
    device = world.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True, leave=False,
               disable=not (progress and world.is_main))
    for images, target in batches(bar):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)                                # (B, K)
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
        top1, top5 = topk_correct(logits, target)
        sums[0] += loss.double()
        sums[1] += top1
        sums[2] += top5
        sums[3] += len(target)
    return _summarise(world, sums, start)
