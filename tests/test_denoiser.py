"""The book's small denoiser: it learns, and trained weights are cached and reused."""
import torch

from sanmini.models import denoiser
from sanmini.models.denoiser import Denoiser, fit_denoiser, load_photos, psnr, trained_denoiser


def test_photos_ship_with_scikit_image():
    photos = load_photos(["camera", "coffee"], size=32)
    assert [tuple(p.shape) for p in photos] == [(3, 32, 32), (3, 32, 48)]
    assert all(0 <= p.min() and p.max() <= 1 for p in photos)


def test_training_lowers_the_loss():
    photos = load_photos(["coffee"], size=48)
    model = Denoiser("pairwise", channels=8, share_planes=4, kernel_size=3)
    losses = fit_denoiser(model, photos, steps=40, batch=2, crop=16)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_psnr():
    clean = torch.zeros(1, 3, 4, 4)
    assert abs(psnr(clean + 0.1, clean) - 20.0) < 1e-5


def test_trained_denoiser_is_cached(tmp_path, monkeypatch):
    calls = []
    real_fit = denoiser.fit_denoiser
    monkeypatch.setattr(denoiser, "fit_denoiser", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    monkeypatch.setattr(denoiser, "load_photos", lambda: load_photos(["coffee"], size=48))
    first = trained_denoiser("convolution", steps=3, cache_dir=tmp_path, channels=8, share_planes=4, kernel_size=3)
    second = trained_denoiser("convolution", steps=3, cache_dir=tmp_path, channels=8, share_planes=4, kernel_size=3)
    assert calls == [1] and len(list(tmp_path.glob("denoiser-*.pt"))) == 1
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert not second.training
    trained_denoiser("convolution", steps=4, cache_dir=tmp_path, channels=8, share_planes=4, kernel_size=3)
    assert calls == [1, 1]                                            # another configuration trains


def test_dense_convolution_denoiser_is_a_reflection_padded_conv2d():
    import pytest
    import torch.nn.functional as F
    model = Denoiser("dense convolution", channels=4, kernel_size=3).double()
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64)
    lifted = model.lift(x)
    want = F.conv2d(F.pad(lifted, (1, 1, 1, 1), mode="reflect"), model.layer.weight, model.layer.bias)
    torch.testing.assert_close(model(x), model.out(want))
    assert sum(p.numel() for p in model.layer.parameters()) == 4 * 4 * 9 + 4
    with pytest.raises(ValueError, match=r"a dense convolution takes no \['relation'\]"):
        Denoiser("dense convolution", relation="dot")
    with pytest.raises(ValueError, match="attention must be .* 'dense convolution', got 'dense'"):
        Denoiser("dense")
