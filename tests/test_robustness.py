"""sanmini.robustness: the contract of FGSM and PGD, a float64 reference loop on a linear model whose
input gradient is known in closed form, and agreement with torchattacks (a maintained attack
library, installed by make setup)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sanmini.experiments import FAIR_ATTACKS
from sanmini.robustness import Normalized, Upsampled, attack_success_rate, fgsm, pgd


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
        one = pgd(model, x, y, eps, steps=1, step_size=eps, random_start=False, keep="last")
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
    adv = pgd(model, x, y, eps=0.1, steps=7, step_size=0.02, random_start=False, keep="last")
    expected = _linear_pgd_reference(W, b, x.reshape(5, -1).numpy(), y.numpy(), 0.1, 7, 0.02)
    np.testing.assert_allclose(adv.reshape(5, -1).numpy(), expected, rtol=0, atol=1e-12)
    # The loss is convex in x: small sign steps never lower it.
    losses = [loss(model, pgd(model, x, y, 0.1, steps=k, step_size=0.005, random_start=False, keep="last"), y)
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
    ours = pgd(model, x, y, 8 / 255, steps=5, step_size=2 / 255, random_start=random_start, keep="last")
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    torch.testing.assert_close(fgsm(model, x, y, 8 / 255), torchattacks.FGSM(model, eps=8 / 255)(x, y),
                               rtol=0, atol=1e-7)


# --- issue 31: every submodule's mode restored, every bad input named ---------------------------

def _modes(model):
    return [m.training for m in model.modules()]


def test_every_submodule_comes_back_in_its_own_mode():
    # A model in train mode with one frozen batch norm, and an eval model with dropout kept in train
    # mode (MC dropout): model.train(flag) on the way out would change both.
    frozen = small_cnn().train()
    frozen[1].eval()
    mc = nn.Sequential(*small_cnn(), nn.Dropout(0.5)).eval()
    mc[-1].train()
    x, y = batch()
    for model in (frozen, mc):
        before = _modes(model)
        stats = model[1].running_mean.clone()
        fgsm(model, x, y, 0.05)
        pgd(model, x, y, 0.05, steps=2)
        attack_success_rate(model, x, y)
        assert _modes(model) == before
        assert torch.equal(model[1].running_mean, stats)
        assert all(p.grad is None for p in model.parameters())     # the attack leaves no gradients


def test_attack_success_rate_checks_the_labels():
    # A model that is always right: labels (N, 1) or (1,) broadcast against the predictions and
    # would give 0.75 where the answer is 0.0.
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    y = torch.tensor([0, 1, 0, 0])
    assert attack_success_rate(model, x, y) == 0.0
    for labels, message in ((y[:, None], r"labels must be an integer tensor of shape \(4,\).*\(4, 1\)"),
                            (y[:1], r"labels must be an integer tensor of shape \(4,\)"),
                            (y.float(), r"labels must be an integer tensor"),
                            (y + 2, r"labels must be class indices below the model's 2 classes, got 3"),
                            (y - 1, r"labels must be class indices >= 0, got -1")):
        with pytest.raises(ValueError, match=message):
            attack_success_rate(model, x, labels)
    with pytest.raises(ValueError, match=r"images must hold at least one image, got shape \(0, 2\)"):
        attack_success_rate(model, x[:0], y[:0])


def test_the_attacks_run_under_no_grad_and_inference_mode():
    model = small_cnn().eval()
    x, y = batch()
    want_fgsm = fgsm(model, x, y, 0.05)
    want_pgd = pgd(model, x, y, 0.05, steps=3, random_start=False)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            got_fgsm = fgsm(model, x, y, 0.05)
            got_pgd = pgd(model, x, y, 0.05, steps=3, random_start=False)
        assert torch.equal(got_fgsm, want_fgsm) and torch.equal(got_pgd, want_pgd)
    with torch.inference_mode():                       # inference tensors as the inputs too
        xi, yi = x.clone(), y.clone()
        assert torch.equal(fgsm(model, xi, yi, 0.05), want_fgsm)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x, torch.full_like(y, -100)), r"labels must be class indices >= 0, got -100"),
    (lambda x, y: (x, torch.full_like(y, 5)), r"labels must be class indices below the model's 5 classes, got 5"),
    (lambda x, y: (x.index_put((torch.tensor(0),), torch.tensor(float("nan"))), y),
     r"images must be finite, got 192 NaN or infinite values"),
    (lambda x, y: (x.double(), y), r"images must have the model's dtype and device, torch.float32 on cpu, "
                                   r"got torch.float64"),
    (lambda x, y: (x[:0], y[:0]), r"images must hold at least one image"),
    (lambda x, y: (x, y.bool()), r"labels must be an integer tensor"),
])
@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_edge_cases_of_the_attacks_are_named(attack, change, message):
    x, y = change(*batch())
    with pytest.raises(ValueError, match=message):
        attack(small_cnn(), x, y, 0.05)


def test_pgd_refuses_a_random_start_that_is_no_bool():
    x, y = batch()
    with pytest.raises(ValueError, match=r"random_start must be True or False, got 'yes'"):
        pgd(small_cnn(), x, y, 0.05, random_start="yes")
    with pytest.raises(ValueError, match=r"lower must be a finite number, got '0'"):
        fgsm(small_cnn(), x, y, 0.05, lower="0")


@pytest.mark.parametrize("mean, std, message", [
    ((0.5, 0.5, 0.5), (0.2, 0.0, 0.2), r"std must be > 0 in every channel, got \(0.2, 0, 0.2\)"),
    ((0.5, 0.5, 0.5), (0.2, -0.2, 0.2), r"std must be > 0 in every channel"),
    ((0.5, 0.5), (0.2, 0.2, 0.2), r"mean and std must give one value per channel each, got 2 means and 3 stds"),
    ((0.5, float("nan"), 0.5), (0.2, 0.2, 0.2), r"mean must be a sequence of finite numbers"),
    ("abc", (0.2, 0.2, 0.2), r"mean must be a sequence of numbers, one per channel"),
])
def test_normalized_refuses_what_it_cannot_undo(mean, std, message):
    with pytest.raises(ValueError, match=message):
        Normalized(small_cnn(), mean, std)


def test_normalized_names_a_channel_count_that_differs():
    model = Normalized(small_cnn(), (0.5,) * 4, (0.2,) * 4)
    with pytest.raises(ValueError, match=r"Normalized has a mean and std for 4 channels: x must be \(N, 4, H, W\), "
                                         r"got shape \(6, 3, 8, 8\)"):
        fgsm(model, *batch(), 0.05)


# --- issue 29: PGD with restarts, success at any iterate, attacks in the data's pixels ----------

def _argmax(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_pgd_keeps_the_first_iterate_that_fools_the_model():
    # Reference: the last iterates of runs of 0, 1, ..., steps steps from the same random start
    # (keep="last", the generator seeded alike) are the iterates x_0 .. x_steps of one run.
    model = small_cnn().eval()
    x, y = batch(n=16)
    eps, steps, alpha = 0.3, 6, 0.1
    iterates = [pgd(model, x, y, eps, steps=k, step_size=alpha, keep="last",
                    generator=torch.Generator().manual_seed(5)) if k else
                (x + torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
                for k in range(steps + 1)]
    ours = pgd(model, x, y, eps, steps=steps, step_size=alpha, generator=torch.Generator().manual_seed(5))
    fooled_at = [_argmax(model, it) != y for it in iterates]
    for i in range(len(x)):
        first = next((k for k in range(steps + 1) if fooled_at[k][i]), None)
        expected = iterates[steps if first is None else first][i]
        torch.testing.assert_close(ours[i], expected, rtol=0, atol=1e-6)
    some_fooled_then_not = any(bool(fooled_at[k][i] and not fooled_at[steps][i])
                               for i in range(len(x)) for k in range(steps))
    assert any(f.any() for f in fooled_at)
    # At least as many fooled as the last iterate alone (more where an image was fooled, then not).
    assert int((_argmax(model, ours) != y).sum()) >= int(fooled_at[steps].sum()) + some_fooled_then_not


def test_restarts_attack_again_only_the_images_not_yet_fooled():
    model = small_cnn().eval()
    x, y = batch(n=16)
    one = pgd(model, x, y, 0.05, steps=3, generator=torch.Generator().manual_seed(0))
    five = pgd(model, x, y, 0.05, steps=3, restarts=5, generator=torch.Generator().manual_seed(0))
    fooled_one, fooled_five = _argmax(model, one) != y, _argmax(model, five) != y
    assert (fooled_five >= fooled_one).all()                   # the first run is the same run
    torch.testing.assert_close(five[fooled_one], one[fooled_one], rtol=0, atol=0)
    assert (five - x).abs().max() <= 0.05 + 1e-6 and five.min() >= 0 and five.max() <= 1


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: pgd(m, x, y, 0.1, restarts=0), r"restarts must be an int >= 1, got 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, restarts=2, random_start=False), r"restarts=2 needs random_start=True"),
    (lambda m, x, y: pgd(m, x, y, 0.1, keep="best"), r"keep must be 'first_fooling' or 'last', got 'best'"),
    (lambda m, x, y: Upsampled(m, 0), r"size must be an int >= 1 or \(height, width\)"),
    (lambda m, x, y: Upsampled(m, 16, mode="cubic"), r"mode must be one of"),
    (lambda m, x, y: Upsampled(m, 16)(x[0]), r"Upsampled takes images \(N, C, H, W\), got shape \(3, 8, 8\)"),
])
def test_bad_restarts_keep_and_sizes_are_named(call, message):
    x, y = batch()
    with pytest.raises(ValueError, match=message):
        call(small_cnn(), x, y)


def test_upsampled_sees_the_digits_as_the_task_upsamples_them():
    from sanmini.data import digits

    small = digits("val", image_size=8, normalize=False).tensors[0][:5]
    large = digits("val", image_size=64, normalize=False).tensors[0][:5]
    model = small_cnn().eval()
    torch.testing.assert_close(Upsampled(model, 64)(small), model(large))
    # The perturbation lives in the data's pixels: 8 x 8, within eps.
    y = _argmax(model, large)
    adv = pgd(Upsampled(model, 64), small, y, 0.1, steps=3, generator=torch.Generator().manual_seed(0))
    assert adv.shape == small.shape and (adv - small).abs().max() <= 0.1 + 1e-6


def _digits_model():
    """A small CNN trained on scikit-learn's 8 x 8 digits in about a second (one thread): ~90% val."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10))
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(6):
        for b in torch.randperm(1400).split(100):
            optimizer.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            optimizer.step()
    model.eval()
    xv, yv = x[1400:], y[1400:]
    correct = _argmax(model, xv) == yv
    assert correct.float().mean() > 0.85
    return model, xv[correct][:150], yv[correct][:150]


def test_pgd_with_restarts_is_as_strong_as_torchattacks_apgd():
    # APGD (Croce and Hein, 2020), a maintained library's stronger attack, against ours at the
    # sweep's protocol (plan.FAIR_ATTACKS: 20 steps, 3 restarts, success at any iterate), at budgets
    # where the success rate is neither 0 nor 100%. Margin: 2 points (3 of 150 images).
    torchattacks = pytest.importorskip("torchattacks", reason="make setup installs torchattacks (see the Makefile)")
    model, x, y = _digits_model()
    for eps in (0.08, 0.15):
        theirs = attack_success_rate(model, torchattacks.APGD(model, eps=eps, steps=20, n_restarts=1, seed=0)(x, y), y)
        ours = attack_success_rate(model, pgd(model, x, y, eps, steps=FAIR_ATTACKS["pgd_steps"],
                                              restarts=FAIR_ATTACKS["pgd_restarts"],
                                              generator=torch.Generator().manual_seed(0)), y)
        last = attack_success_rate(model, pgd(model, x, y, eps, steps=20, keep="last",
                                              generator=torch.Generator().manual_seed(0)), y)
        assert 0.05 < theirs < 0.95, (eps, theirs)
        assert ours >= theirs - 0.02, (eps, ours, theirs)
        assert ours >= last                                   # never weaker than the last iterate
