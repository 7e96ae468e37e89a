"""sanmini.memory.peak_bytes on allocations of known size, on the CPU (and on a GPU when present)."""
import pytest
import torch

from sanmini.memory import peak_bytes

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
