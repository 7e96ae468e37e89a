"""A one-layer denoiser: the book's small model whose attention weights mean something.

    noisy (N, 3, H, W) -> lift 1x1 -> one aggregation layer -> 1x1 -> clean estimate (N, 3, H, W)

The aggregation layer is pairwise or patchwise self-attention (:mod:`sanmini.nn`) or, for
comparison, a convolution with the same footprint (:class:`sanmini.nn.FixedAggregation`), or a dense
K x K convolution (``"dense convolution"``, ``nn.Conv2d``, which is not of the aggregation form). Trained
for a minute on noisy crops of scikit-image's sample photographs (:data:`PHOTOS`), the attention
weights change from pixel to pixel with the content of the image, where the convolution can only
learn one blur for every pixel; the book measures them on photographs none of the denoisers
trained on (:data:`HELD_OUT_PHOTOS`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..cpu_settings import without_onednn
from ..nn import FixedAggregation, PairwiseAttention, PatchwiseAttention

#: The scikit-image photographs the denoisers train on (:func:`trained_denoiser`).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
#: Photographs that no denoiser trains on, for evaluating them.
HELD_OUT_PHOTOS = ("coins", "retina")


class Denoiser(nn.Module):
    """x (N, 3, H, W) in [0, 1] -> (N, 3, H, W). ``layer`` is the aggregation layer under study."""

    def __init__(self, attention: str = "pairwise", channels: int = 16, share_planes: int = 8,
                 kernel_size: int = 7, backend: str = "auto", **attention_kwargs):
        super().__init__()
        self.lift = nn.Conv2d(3, channels, kernel_size=1)
        kw = dict(share_planes=share_planes, kernel_size=kernel_size, backend=backend)
        if attention == "pairwise":
            self.layer = PairwiseAttention(channels, max(1, channels // 4), channels, **kw, **attention_kwargs)
        elif attention == "patchwise":
            self.layer = PatchwiseAttention(channels, max(1, channels // 4), channels, **kw, **attention_kwargs)
            # Start from a box filter: gamma's last layer outputs 1 / K^2 for every footprint
            # position whatever the input, and training learns how to depart from it. (Pairwise
            # weights need no such start: the softmax makes them uniform at first.)
            last = self.layer.conv_w[-1]
            nn.init.zeros_(last.weight)
            nn.init.constant_(last.bias, 1.0 / kernel_size ** 2)
        elif attention == "convolution":
            self.layer = FixedAggregation(channels, channels, **kw, **attention_kwargs)
        elif attention == "dense convolution":
            # The baseline outside the aggregation form: every one of the K*K taps mixes all channels
            # with its own (channels x channels) matrix; reflection padding, as the other layers.
            if attention_kwargs:
                raise ValueError(f"a dense convolution takes no {sorted(attention_kwargs)}")
            self.layer = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, padding_mode="reflect")
        else:
            raise ValueError(f"attention must be 'pairwise', 'patchwise', 'convolution' or 'dense convolution', "
                             f"got {attention!r}")
        self.out = nn.Conv2d(channels, 3, kernel_size=1)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.out(self.layer(self.lift(noisy)))


def load_photos(names=PHOTOS, size: int = 128) -> list[torch.Tensor]:
    """scikit-image's sample photographs (:func:`sanmini.data.small.photo`, shipped in the package)
    as (3, size, size') in [0, 1], the shorter side resized to ``size``."""
    from ..data.small import photo

    photos = []
    for name in names:
        image = photo(name)[None]                                        # (1, 3, H, W)
        scale = size / min(image.shape[-2:])
        shape = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
        photos.append(nn.functional.interpolate(image, size=shape, mode="area")[0].clamp(0, 1))
    return photos


def noisy_batch(photos, batch: int, crop: int, sigma: float, generator: torch.Generator):
    """A fresh batch of random crops (N, 3, crop, crop) and the same crops with Gaussian noise of std sigma."""
    clean = []
    for _ in range(batch):
        img = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        top = int(torch.randint(img.shape[1] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[2] - crop + 1, (1,), generator=generator))
        clean.append(img[:, top:top + crop, left:left + crop])
    clean = torch.stack(clean)
    return clean + sigma * torch.randn(clean.shape, generator=generator), clean


def psnr(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    return -10 * math.log10(float(((estimate - clean) ** 2).mean()))


def fit_denoiser(model: Denoiser, photos, steps: int = 300, batch: int = 8, crop: int = 40,
                 sigma: float = 0.1, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``model`` with Adam on noisy crops; returns the loss (MSE) of every step.

    Runs with oneDNN (mkldnn) off: its 1x1 convolutions are slow on a CPU for the few channels
    of this model over the large (N, C, K*K, H*W) relation tensors, and plain matrix products are
    several times faster (a pairwise step 975 -> 358 ms, a convolution step 302 -> 36 ms at
    batch 8, 40 x 40 crops, on 2 cores).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    model.train()
    with without_onednn():
        for _ in range(steps):
            noisy, clean = noisy_batch(photos, batch, crop, sigma, generator)
            loss = nn.functional.mse_loss(model(noisy), clean)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    return losses


CACHE_ENV = "SANMINI_CACHE"   # `make book` and `make test` point it under _build/


def _recipe_source() -> bytes:
    """The code that decides what a cached model learned (this module and the photos it reads):
    part of the cache key, so that a changed recipe never reuses old weights."""
    from ..data import small

    return b"".join(Path(module.__file__).read_bytes() for module in (sys.modules[__name__], small))


def trained_denoiser(attention: str = "pairwise", steps: int = 200, seed: int = 0,
                     cache_dir=None, **model_kwargs) -> Denoiser:
    """A :class:`Denoiser` trained with :func:`fit_denoiser` on the sample photographs (batches of
    4 crops of 32 x 32, noise std 0.1, Adam at lr 0.01), in eval mode.

    The weights are cached in ``cache_dir`` (default: ``$SANMINI_CACHE``, else
    ``~/.cache/sanmini``) under a name made from the configuration, so chapters that need the same
    model train it once. Nothing is downloaded.
    """
    config = {"attention": attention, "steps": steps, "seed": seed, **model_kwargs}
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode() + _recipe_source()).hexdigest()[:16]
    cache_dir = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sanmini")
    path = cache_dir / f"denoiser-{key}.pt"
    torch.manual_seed(seed)
    model = Denoiser(attention, **model_kwargs)
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except (RuntimeError, EOFError, ValueError):
            pass   # written by another version of the model: train again
    fit_denoiser(model, load_photos(), steps=steps, batch=4, crop=32, sigma=0.1, lr=1e-2, seed=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)   # atomic: a reader never sees half a file
    return model.eval()
