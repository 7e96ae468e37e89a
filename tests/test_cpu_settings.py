"""sanmini.cpu_settings: oneDNN on or off for a block, restored after it, and the same function
computed either way."""
import pytest
import torch

from sanmini.cpu_settings import onednn, without_onednn


def test_onednn_is_set_inside_the_block_and_restored_after_it():
    before = torch.backends.mkldnn.enabled
    with without_onednn():
        assert torch.backends.mkldnn.enabled is False
        with onednn(True):
            assert torch.backends.mkldnn.enabled is True
        assert torch.backends.mkldnn.enabled is False
    assert torch.backends.mkldnn.enabled == before
    with pytest.raises(RuntimeError), without_onednn():
        raise RuntimeError("restored on an error too")
    assert torch.backends.mkldnn.enabled == before


def test_onednn_takes_a_bool():
    with pytest.raises(TypeError, match="enabled must be True or False, got 'off'"):
        with onednn("off"):
            pass


def test_both_settings_compute_the_same_convolution():
    conv = torch.nn.Conv2d(16, 8, 1).double()
    x = torch.randn(2, 16, 49, 64, dtype=torch.float64)
    with onednn(True):
        on = conv(x)
    with onednn(False):
        off = conv(x)
    assert torch.allclose(on, off, atol=1e-12)
