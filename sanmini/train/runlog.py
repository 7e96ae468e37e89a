"""What a run reports: a CSV row per epoch, a line per epoch, a summary at the end (rank 0)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
           "val_top5", "images_per_s", "epoch_s", "peak_memory_mib")


class CSVLog:
    """``log.csv``: one row per epoch, flushed as written.

    A resumed run keeps the rows of the epochs its checkpoint had completed and drops any later
    ones (written after that checkpoint, before the run was killed), so each epoch appears once.
    """

    def __init__(self, path, keep_epochs: int = 0):
        self.path = Path(path)
        rows = []
        if keep_epochs and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["epoch"]) <= keep_epochs]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(row[k]) for k in COLUMNS})


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def epoch_row(epoch: int, step: int, lr: float, train: dict, val: dict) -> dict:
    return {"epoch": epoch, "step": step, "lr": lr, "train_loss": train["loss"],
            "train_top1": train["top1"], "train_top5": train["top5"], "val_loss": val["loss"],
            "val_top1": val["top1"], "val_top5": val["top5"], "images_per_s": train["images_per_s"],
            "epoch_s": train["seconds"] + val["seconds"], "peak_memory_mib": train["peak_memory_mib"]}


def epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
            f"top-1 {row['train_top1']:.2f}% | val loss {row['val_loss']:.4f} "
            f"top-1 {row['val_top1']:.2f}% top-5 {row['val_top5']:.2f}% | lr {row['lr']:.4g} | "
            f"{row['images_per_s']:.1f} images/s | peak memory {row['peak_memory_mib']:.0f} MiB | "
            f"{row['epoch_s']:.1f} s")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def summary(title: str, rows: list[dict], best: dict, files: dict, epochs: int) -> str:
    """The end-of-run report: where it got to, how fast, the best and last accuracy, the files."""
    lines = [title]
    if rows:
        last = rows[-1]
        seconds = sum(r["epoch_s"] for r in rows)
        lines.append(f"  epochs {rows[0]['epoch']}-{last['epoch']} of {epochs} in this run: "
                     f"{_duration(seconds)}, {sum(r['images_per_s'] for r in rows) / len(rows):.1f} "
                     f"training images/s, peak memory {max(r['peak_memory_mib'] for r in rows):.0f} MiB")
        lines.append(f"  last  (epoch {last['epoch']}): val top-1 {last['val_top1']:.2f}%, "
                     f"top-5 {last['val_top5']:.2f}%, loss {last['val_loss']:.4f}")
    else:
        lines.append(f"  no epoch left to train: the run had completed {epochs} epochs")
    if best.get("epoch"):
        lines.append(f"  best  (epoch {best['epoch']}): val top-1 {best['top1']:.2f}%, top-5 {best['top5']:.2f}%")
    lines += [f"  {name}: {path}" for name, path in files.items()]
    return "\n".join(lines)
