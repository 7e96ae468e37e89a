"""sanmini.robustness: the contract of FGSM and PGD, a float64 reference loop on a linear model whose
input gradient is known in closed form, and agreement with torchattacks (a maintained attack
library, installed by make setup)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sanmini.robustness import Normalized, attack_success_rate, fgsm, pgd


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))


def batch(seed=1, n=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (n,), generator=g)


def loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("lower, upper", [(0.0, 1.0), (-0.5, 2.0)])
def test_pgd_stays_in_the_ball_and_the_pixel_range(random_start, lower, upper):
    model = small_cnn()
    x, y = batch()
    x = lower + (upper - lower) * x
    for eps in (0.0, 0.03, 0.3):
        adv = pgd(model, x, y, eps, steps=5, random_start=random_start, lower=lower, upper=upper,
                  generator=torch.Generator().manual_seed(0))
        assert adv.shape == x.shape and not adv.requires_grad
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= lower and adv.max() <= upper
    assert torch.equal(pgd(model, x, y, 0.0, lower=lower, upper=upper), x)    # no budget, no change


def test_one_step_from_the_image_is_fgsm():
    model = small_cnn()
    x, y = batch()
    for eps in (0.01, 0.1):
        one = pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False)
        assert torch.equal(one, fgsm(model, x, y, eps))
    assert (fgsm(model, x, y, 0.1) - x).abs().max() <= 0.1 + 1e-6


def _linear_pgd_reference(W, b, x, y, eps, steps, alpha):
    """PGD on logits W x + b in float64 numpy loops: grad_x mean CE = W^T (softmax - onehot) / N."""
    n = x.shape[0]
    adv = x.copy()
    for _ in range(steps):
        for i in range(n):
            z = W @ adv[i] + b
            p = np.exp(z - z.max())
            p /= p.sum()
            p[y[i]] -= 1.0
            grad = W.T @ p / n
            adv[i] = np.clip(np.clip(adv[i] + alpha * np.sign(grad) - x[i], -eps, eps) + x[i], 0.0, 1.0)
    return adv


def test_pgd_on_a_linear_model_matches_a_float64_reference_and_never_lowers_the_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    x = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    W, b = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    adv = pgd(model, x, y, eps=0.1, steps=7, step_size=0.02, random_start=False)
    expected = _linear_pgd_reference(W, b, x.reshape(5, -1).numpy(), y.numpy(), 0.1, 7, 0.02)
    np.testing.assert_allclose(adv.reshape(5, -1).numpy(), expected, rtol=0, atol=1e-12)
    # The loss is convex in x: small sign steps never lower it.
    losses = [loss(model, pgd(model, x, y, 0.1, steps=k, step_size=0.005, random_start=False), y)
              if k else loss(model, x, y) for k in range(9)]
    assert all(b >= a - 1e-12 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] > losses[0]


def test_the_model_is_attacked_in_eval_mode_and_left_as_it_was():
    model = small_cnn().train()
    x, y = batch()
    stats = model[1].running_mean.clone()
    pgd(model, x, y, 0.05, steps=3)
    fgsm(model, x, y, 0.05)
    assert model.training and torch.equal(model[1].running_mean, stats)


def test_attack_success_rate_counts_the_misclassified():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert attack_success_rate(model, x, torch.tensor([0, 1, 1, 1])) == 0.25


def test_normalized_feeds_the_model_normalised_pixels():
    model = small_cnn().eval()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x, _ = batch()
    expected = model((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(Normalized(model, mean, std)(x), expected)


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: pgd(m, x * 255, y, 0.1), r"images must lie in \[lower, upper\] = \[0.0, 1.0\].*Normalized"),
    (lambda m, x, y: pgd(m, x, y[:2], 0.1), r"labels must be an integer tensor of shape \(6,\)"),
    (lambda m, x, y: pgd(m, x, y.float(), 0.1), r"labels must be an integer tensor"),
    (lambda m, x, y: pgd(m, x, y, -0.1), r"eps must be a finite number >= 0, got -0.1"),
    (lambda m, x, y: pgd(m, x, y, float("nan")), r"eps must be a finite number >= 0, got nan"),
    (lambda m, x, y: pgd(m, x, y, 0.1, steps=0), r"steps must be an int >= 1, got 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, step_size=float("inf")), r"step_size must be a finite number"),
    (lambda m, x, y: fgsm(m, (x * 255).long(), y, 0.1), r"images must be a floating-point tensor"),
    (lambda m, x, y: fgsm(m, x, y, 0.1, lower=1.0, upper=0.0), r"lower must be below upper"),
])
def test_bad_arguments_are_named(call, message):
    x, y = batch()
    with pytest.raises(ValueError, match=message):
        call(small_cnn(), x, y)


@pytest.mark.parametrize("random_start", [False, True])
def test_agrees_with_torchattacks(random_start):
    torchattacks = pytest.importorskip("torchattacks", reason="make setup installs torchattacks (see the Makefile)")
    model = small_cnn().eval()
    x, y = batch(n=8)
    torch.manual_seed(123)
    theirs = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5, random_start=random_start)(x, y)
    torch.manual_seed(123)
    ours = pgd(model, x, y, 8 / 255, steps=5, step_size=2 / 255, random_start=random_start)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    torch.testing.assert_close(fgsm(model, x, y, 8 / 255), torchattacks.FGSM(model, eps=8 / 255)(x, y),
                               rtol=0, atol=1e-7)
