"""sanmini.memory.peak_bytes on allocations of known size, on the CPU (and on a GPU when present);
the profiler's log lines silenced."""
import os
import subprocess
import sys

import pytest
import torch

from sanmini import memory
from sanmini.memory import peak_bytes, quiet_profiler

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _one(device):
    return torch.empty(1000, 1000, device=device)              # 4,000,000 bytes, returned


def _overlapping(device):
    a = torch.empty(1000, 1000, device=device)                 # 4,000,000
    b = torch.empty(500, 1000, device=device)                  # + 2,000,000: 6,000,000 held
    del a                                                      # 2,000,000 held
    c = torch.empty(1200, 1000, device=device)                 # + 4,800,000: 6,800,000 held
    return b, c


@pytest.mark.parametrize("device", DEVICES)
def test_peak_of_known_allocations(device):
    assert peak_bytes(lambda: _one(device), device) == 4_000_000
    assert peak_bytes(lambda: _overlapping(device), device) == 6_800_000


def test_tensors_made_before_the_call_do_not_count():
    kept = torch.empty(2000, 1000)                             # 8,000,000 bytes, before the call
    # In place: nothing of its size (torch wraps the 1 in a tensor of a few bytes).
    assert peak_bytes(lambda: kept.add_(1)) < 64
    assert 0 <= peak_bytes(lambda: kept + 1) - kept.numel() * 4 < 64    # one new tensor of its size


def test_a_training_step_holds_its_activations():
    """A linear layer's backward pass holds the gradient of its weight besides the activations."""
    layer = torch.nn.Linear(1000, 1000)
    x = torch.randn(64, 1000)

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).square().sum().backward()
    assert peak_bytes(step) >= 1000 * 1000 * 4                 # at least the new weight gradient


def test_bad_device():
    with pytest.raises(ValueError, match="device must be 'cpu' or a CUDA device"):
        peak_bytes(lambda: None, "meta")


# A fresh interpreter, as a notebook's kernel is: Kineto reads its log level when the process's first
# profiler starts, and torch's allocator warns at the first free of a block it did not see allocated.
_PROFILED_STEP = """
import torch
from torch.profiler import ProfilerActivity, profile
from sanmini import memory
from sanmini.memory import peak_bytes, quiet_profiler

kept = [torch.empty(1000) for _ in range(8)]

def step():
    kept.clear()                           # frees blocks allocated before the profiler started
    return torch.empty(1000, 1000)

x = torch.randn(64, 64)
if QUIET:
    print(peak_bytes(step))
    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        x @ x
else:                                      # the same two profiles, straight from torch
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        x @ x
print(sum(e.count for e in prof.key_averages() if e.key == "aten::mm"))
"""


def _run_profiled_step(quiet: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KINETO_LOG_LEVEL", "TORCH_CPP_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-c", f"QUIET = {quiet}\n" + _PROFILED_STEP],
                          capture_output=True, text=True, env=env, timeout=300, check=True)


def test_the_profiler_helpers_print_nothing():
    """peak_bytes and quiet_profiler write nothing on the process's stdout and stderr (file
    descriptors 1 and 2, where Kineto and c10 write) besides what the caller prints, while the same
    profiles straight from torch do (the allocator's warning at least: Kineto's lines depend on its
    version, the GPU error on the machine)."""
    quiet = _run_profiled_step(True)
    assert quiet.stdout.split() == ["4000000", "1"]
    assert quiet.stderr == ""
    plain = _run_profiled_step(False)
    assert plain.stdout.split() == ["1"]
    assert "Memory block of unknown size was allocated before the profiling started" in plain.stderr


def test_quiet_profiler_restores_what_it_set(monkeypatch):
    monkeypatch.delenv("KINETO_LOG_LEVEL", raising=False)
    with quiet_profiler():
        assert os.environ["KINETO_LOG_LEVEL"] == "6"
    assert "KINETO_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("KINETO_LOG_LEVEL", "2")                # the user's choice is kept
    with quiet_profiler():
        assert os.environ["KINETO_LOG_LEVEL"] == "2"
    assert os.environ["KINETO_LOG_LEVEL"] == "2"
    level = memory._c10_log_level()                            # None where torch does not export it
    if level is not None:
        monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
        before = level.value
        with quiet_profiler():
            assert level.value == max(before, 2)               # ERROR and above only
        assert level.value == before
