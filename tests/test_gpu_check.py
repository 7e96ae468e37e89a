"""bench/gpu_check.py (`make gpu-check`): on a machine without a GPU it refuses with status 2; its
plumbing runs end to end in Numba's CUDA simulator with tiny sizes and writes its section into a
copy of bench/RESULTS.md, keeping the other sections."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_fails():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "no CUDA GPU" in done.stderr and "--simulator" in done.stderr


def test_the_gpu_plan_runs_the_cuda_tests_both_benchmarks_and_an_amp_training(gpu_check, tmp_path):
    steps = gpu_check.plan(False, tmp_path / "data", tmp_path / "run", (7, 5))
    assert [s.name for s in steps] == ["CUDA tests", "operators benchmark", "training-step benchmark",
                                       "SAN10 training, AMP"]
    assert sum(s.timeout_s for s in steps) <= gpu_check.BUDGET_S == 480
    tests, ops, train_step, training = (s.argv for s in steps)
    assert set(gpu_check.CUDA_TESTS) <= set(tests) and "tests/test_ptx.py" in tests
    assert ops[1:4] == ["bench/ops.py", "--device", "cuda"] and "--write" in ops
    assert train_step[1:4] == ["bench/train_step.py", "--device", "cuda"] and "--models" not in train_step
    assert "backend=cuda" in training and "--amp" in training
    assert training[training.index("--amp-dtype") + 1] == "float16"            # a T4: no bfloat16
    assert gpu_check.amp_dtype((8, 0)) == gpu_check.amp_dtype((9, 0)) == "bfloat16"


def test_fused_is_a_mode_of_the_training_step_benchmark():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import train_step
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert "fused" in [m.name for m in train_step.modes_of("san10_pairwise", False)]


@pytest.mark.slow
def test_the_plumbing_runs_in_the_simulator(tmp_path):
    results = tmp_path / "RESULTS.md"
    shutil.copy(ROOT / "bench" / "RESULTS.md", results)
    before = [line for line in results.read_text().splitlines() if line.startswith("## ")]
    done = subprocess.run([sys.executable, str(SCRIPT), "--simulator", "--results", str(results),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = results.read_text()
    after = [line for line in text.splitlines() if line.startswith("## ")]
    assert after[:len(before)] == before and len(after) == len(before) + 1 and "GPU check" in after[-1]
    section = text[text.index(after[-1]):]
    for row in ("| CUDA tests | passed |", "| operators benchmark | options accepted |",
                "| training-step benchmark | options accepted |", "| SAN10 training, AMP | passed |"):
        assert row in section, section
    assert "Numba's CUDA simulator" in section and "- Driver:" in section and "- Versions: torch " in section
    assert "Training, last epoch: train loss" in section
