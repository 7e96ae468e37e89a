"""The whole GPU check in one command, for the first machine with a GPU: ``make gpu-check``.

    python bench/gpu_check.py              # on a machine with a CUDA GPU: about 8 minutes at most
    python bench/gpu_check.py --simulator  # the same plumbing, tiny, in Numba's CUDA simulator

Four steps, each in its own process with its own time limit (together at most 8 minutes, what an
H100-class GPU should need; a step that runs out of time is recorded as such, and the next runs):

1. the CUDA tests: tests/test_ops_cuda.py, tests/test_fused_cuda.py (the kernels on the GPU,
   against the CPU kernels and the torch backend) and tests/test_ptx.py (every kernel assembled
   for sm_75 to sm_90);
2. ``bench/ops.py --device cuda --write``: the operators, cuda vs torch, forward and backward;
3. ``bench/train_step.py --device cuda --no-compile --write``: training steps of SAN10 and
   ResNet26 in every mode, ``fused`` included, but not ``compile`` (inductor's compilation of each
   model would take most of the budget);
4. a short SAN10 training on synthetic data with AMP (``python -m sanmini.train``, the "cuda" ops
   backend, bfloat16 where the GPU computes it, float16 with a gradient scaler on a T4): 2 epochs
   of a small image folder whose classes differ in colour, so the accuracy says it learned.

Then the section "GPU check" of bench/RESULTS.md gets the device, compute capability, driver,
CUDA, the versions, the date and commit, and each step's outcome and time (steps 2 and 3 write
their own GPU sections of that file). The exit status is 0 only if every step passed.

On a machine without a GPU it says so and exits with status 2. ``--simulator`` runs the same
steps small, on the CPU (tests/test_gpu_check.py does): one CUDA test in Numba's CUDA simulator,
the benchmark scripts' command lines checked against their ``--help`` (their GPU paths need a
GPU), the training of a narrow SAN10 on a few 64-pixel images with Numba's CPU kernels (the
simulator runs each GPU thread in Python: far too slow for a training); it writes its section to
``--results`` only.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
HEADING = "## GPU check: the CUDA tests, the benchmarks and a short SAN10 training"
BUDGET_S = 8 * 60
CUDA_TESTS = ("tests/test_ops_cuda.py", "tests/test_fused_cuda.py", "tests/test_ptx.py")


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    help_check: bool = False                 # --simulator: the options checked against --help
    env: dict[str, str] = field(default_factory=dict)


def amp_dtype(capability: tuple[int, int]) -> str:
    """bfloat16 from Ampere (sm_80) on; a T4 (sm_75) has no bfloat16 arithmetic: float16."""
    return "bfloat16" if capability >= (8, 0) else "float16"


def synthetic_folder(root: Path, size: int, per_class: dict[str, int], classes: int = 4) -> Path:
    """An image folder (root/SPLIT/CLASS/*.png) of noise around one colour per class."""
    import torch
    from sanmini.data import save_image_folder
    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(classes, 3, 1, 1, generator=generator)
    names = [f"c{k}" for k in range(classes)]
    for split, count in per_class.items():
        labels = torch.arange(count * classes) % classes
        images = (colours[labels] + 0.25 * torch.randn(len(labels), 3, size, size, generator=generator))
        save_image_folder(list(zip(images.clamp(0, 1), labels)), root, split, names)
    return root


def plan(simulator: bool, data: Path, out: Path, capability: tuple[int, int]) -> list[Step]:
    python = sys.executable
    backend = "cuda"
    if simulator:                   # the kernels in the simulator: one test; the training on Numba's
        backend = "cpu"             # CPU kernels (the simulator runs each GPU thread in Python)
        tests = [python, "-m", "pytest", "tests/test_ops_cuda.py", "-q", "-p", "no:cacheprovider",
                 "-k", "float32_matches_torch_backend"]
        training = ["--image-size", "64", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                    "--device", "cpu", "--model-arg", "width=16", "--model-arg", "share_planes=4",
                    "--model-arg", "kernel_size=3", "--model-arg", "layers=1,1,1,1,1"]
    else:
        tests = [python, "-m", "pytest", *CUDA_TESTS, "-q", "-p", "no:cacheprovider", "-x"]
        training = ["--image-size", "128", "--epochs", "2", "--batch-size", "64", "--workers", "4",
                    "--device", "cuda"]
    return [
        Step("CUDA tests", tests, 170),
        Step("operators benchmark", [python, "bench/ops.py", "--device", "cuda", "--repeats", "5",
                                     "--write"], 70, help_check=simulator),
        # --no-compile: inductor's compilation of each model would take most of the budget
        Step("training-step benchmark", [python, "bench/train_step.py", "--device", "cuda",
                                         "--repeats", "5", "--batch", "32", "--no-compile", "--write"],
             140, help_check=simulator),
        Step("SAN10 training, AMP", [python, "-m", "sanmini.train", str(data), "--model", "san10_pairwise",
                                     "--model-arg", f"backend={backend}", *training, "--amp", "--amp-dtype",
                                     "bfloat16" if simulator else amp_dtype(capability), "--no-progress",
                                     "--out", str(out)], 100),
    ]


def run_step(step: Step) -> dict:
    """Run one step; its outcome ("passed", "failed (status N)", "timed out", "options accepted")."""
    env = {**os.environ, **step.env}
    start = time.perf_counter()
    if step.help_check:                      # the GPU path needs a GPU: its options, checked
        done = subprocess.run([*step.argv[:2], "--help"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=step.timeout_s)
        missing = [a for a in step.argv[2:] if a.startswith("--") and a not in done.stdout]
        outcome = "options accepted" if done.returncode == 0 and not missing else f"unknown options {missing}"
        return {"step": step.name, "outcome": outcome, "seconds": time.perf_counter() - start,
                "tail": done.stdout[-2000:] + done.stderr[-2000:]}
    try:
        done = subprocess.run(step.argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=step.timeout_s)
        outcome = "passed" if done.returncode == 0 else f"failed (status {done.returncode})"
        tail = done.stdout[-3000:] + done.stderr[-3000:]
    except subprocess.TimeoutExpired as err:
        outcome = f"timed out after {step.timeout_s:.0f} s"
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        tail = out[-3000:]
    return {"step": step.name, "outcome": outcome, "seconds": time.perf_counter() - start, "tail": tail}


def device_lines(simulator: bool) -> list[str]:
    """Device, compute capability, memory, driver, CUDA and versions, as one bullet list."""
    import numba
    import torch
    versions = f"torch {torch.__version__}, numba {numba.__version__}"
    try:
        from importlib.metadata import version
        versions += f", numba-cuda {version('numba-cuda')}"
    except Exception:  # noqa: BLE001 - numba's own CUDA target
        pass
    versions += f", Python {platform.python_version()}"
    if simulator:
        device = "Numba's CUDA simulator on the CPU (no GPU: the plumbing only, tiny sizes)"
    else:
        props = torch.cuda.get_device_properties(0)
        device = (f"{props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
                  f"{props.multi_processor_count} SMs")
    driver = "-"
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
        driver = query.stdout.strip().splitlines()[0] if query.returncode == 0 and query.stdout.strip() else "-"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "-"
    return [f"- Date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
            f"- Device: {device}",
            f"- Driver: {driver}; CUDA (torch's runtime): {torch.version.cuda or '-'}",
            f"- Versions: {versions}",
            f"- Commit: {commit}",
            f"- Command: `python bench/gpu_check.py{' --simulator' if simulator else ''}` "
            f"(`make gpu-check`); budget {BUDGET_S // 60} minutes"]


def training_lines(out: Path) -> list[str]:
    import torch
    last = out / "last.pt"
    if not last.exists():
        return ["The training wrote no checkpoint."]
    row = torch.load(last, map_location="cpu", weights_only=False)["metrics"]
    return [f"Training, last epoch: train loss {row['train_loss']:.3f}, val top-1 {row['val_top1']:.1f}% "
            f"(4 classes: chance 25%), {row['images_per_s']:.0f} images/s, peak memory "
            f"{row['peak_memory_mib']:.0f} MiB."]


def section(lines: list[str], results: list[dict], total_s: float, training: list[str]) -> str:
    rows = ["| step | outcome | seconds |", "|---|---|---:|"]
    rows += [f"| {r['step']} | {r['outcome']} | {r['seconds']:.0f} |" for r in results]
    verdict = ("Every step passed" if all(r["outcome"] in ("passed", "options accepted") for r in results)
               else "**Not every step passed**")
    return "\n".join([HEADING, "", *lines, "", *rows, "",
                      f"{verdict}, in {total_s:.0f} s of the {BUDGET_S} s budget.", "", *training])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulator", action="store_true",
                        help="the plumbing on Numba's CUDA simulator, tiny, without a GPU")
    parser.add_argument("--results", type=Path, default=None,
                        help="the file to write the section to (default bench/RESULTS.md; "
                             "--simulator writes nothing without it)")
    parser.add_argument("--work", type=Path, default=ROOT / "_build" / "gpu-check",
                        help="folder for the synthetic data and the training's output")
    args = parser.parse_args(argv)

    if args.simulator:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"     # before numba is imported, here and below
    import torch
    if not args.simulator and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check. "
              "Run it on a machine with a GPU, or `python bench/gpu_check.py --simulator` for the "
              "plumbing.", file=sys.stderr)
        return 2
    capability = (0, 0) if args.simulator else torch.cuda.get_device_capability(0)
    if args.work.exists():
        shutil.rmtree(args.work)
    size, counts = (64, {"train": 2, "val": 1}) if args.simulator else (128, {"train": 256, "val": 64})
    data = synthetic_folder(args.work / "data", size, counts)
    start = time.perf_counter()
    results = []
    for step in plan(args.simulator, data, args.work / "run", capability):
        left = BUDGET_S - (time.perf_counter() - start)
        step.timeout_s = max(10.0, min(step.timeout_s, left))
        print(f"gpu-check: {step.name} ...", file=sys.stderr, flush=True)
        results.append(run_step(step))
        print(f"gpu-check: {step.name}: {results[-1]['outcome']} ({results[-1]['seconds']:.0f} s)",
              file=sys.stderr, flush=True)
        if results[-1]["outcome"] not in ("passed", "options accepted"):
            print(results[-1]["tail"], file=sys.stderr)
    total = time.perf_counter() - start
    text = section(device_lines(args.simulator), results, total, training_lines(args.work / "run"))
    print(text)
    target = args.results or (None if args.simulator else ROOT / "bench" / "RESULTS.md")
    if target is not None:
        import common
        common.RESULTS = target
        common.write_section(HEADING, text, {})
        print(f"\nwrote {target}", file=sys.stderr)
    return 0 if all(r["outcome"] in ("passed", "options accepted") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
