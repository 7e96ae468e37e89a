"""sanmini.experiments: the sweep's plan, task, resumable CSV and the reading of its results."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import sanmini
import sanmini.data
import sanmini.robustness
from sanmini.experiments import ENTRIES, EXPERIMENTS, VIEWS, Config, Task, plan, results, sweep, task
from sanmini.experiments.__main__ import DEFAULT_OUT, cli

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / DEFAULT_OUT["first"]
TINY = Task(per_class=2, epochs=1, batch_size=10, val_per_class=3)
TINY_ATTACKS = {"images": 3, "eps": (0.02, 0.05, 0.1), "pgd_steps": 2, "pgd_restarts": 2}


def test_a_variant_equal_to_the_default_is_the_default_config():
    assert Config.of("san10_pairwise", relation="subtraction", share="none") == Config.of("san10_pairwise")
    assert Config.of("san10_pairwise", relation="dot") != Config.of("san10_pairwise")
    with pytest.raises(ValueError, match="position_encoding"):
        Config.of("san10_patchwise", position_encoding=False)
    # 15 distinct networks, each built as the plan says.
    configs = {e.config for e in ENTRIES}
    assert len(configs) == 15
    for config in configs:
        model = config.build()
        for name, value in config.kwargs.items():
            if name in ("relation", "share", "position_encoding"):
                assert getattr(model.layer0[0].sam, name) == value
        if config.model.startswith("san"):
            kernels = [getattr(model, f"layer{k}")[0].sam.aggregation.kernel_size for k in range(5)]
            assert tuple(kernels) == config.kwargs["kernels"]
            assert len(model.layer0[0].sam.conv_w) == 3 * config.kwargs["gamma_layers"]


def test_the_plan_has_every_ablation_of_the_issue():
    variants = {x: [e.variant for e in ENTRIES if e.experiment == x] for x in EXPERIMENTS}
    assert sorted(variants["pairwise_relation"]) == sorted(sanmini.nn.PAIRWISE_RELATIONS)
    assert sorted(variants["patchwise_relation"]) == sorted(sanmini.nn.PATCHWISE_RELATIONS)
    assert variants["footprint"] == ["3", "5", "7"]
    assert variants["position_encoding"] == ["on", "off"]
    assert variants["gamma_depth"] == ["1", "2", "3"]
    assert variants["sharing"] == ["none", "phi_psi"]
    assert [e.label for e in ENTRIES if e.experiment == "comparison"] == ["SAN10 pairwise", "SAN10 patchwise", "ResNet26"]


def test_matched_in_parameters():
    # The ResNet's width is the one whose parameter count is closest to SAN10 pairwise's.
    counts = {e.label: sum(p.numel() for p in e.config.build().parameters())
              for e in ENTRIES if e.experiment == "comparison"}
    san = counts["SAN10 pairwise"]
    widths = {w: sum(p.numel() for p in sanmini.create("resnet26", num_classes=10, width=w).parameters())
              for w in range(8, 21)}
    assert min(widths, key=lambda w: abs(widths[w] - san)) == plan.DEFAULTS["resnet26"]["width"]
    assert counts["ResNet26"] == widths[plan.DEFAULTS["resnet26"]["width"]]


def test_training_subset_keeps_the_first_of_each_class_in_order():
    images = torch.arange(12.0).view(12, 1, 1, 1)
    labels = torch.tensor([0, 1, 1, 0, 2, 1, 0, 2, 2, 0, 1, 2])
    dataset = torch.utils.data.TensorDataset(images, labels)
    dataset.classes = ["a", "b", "c"]
    x, y = task.training_subset(dataset, 2)
    assert x.flatten().tolist() == [0, 1, 2, 3, 4, 7]
    assert y.tolist() == [0, 1, 1, 0, 2, 2]
    with pytest.raises(ValueError, match="per_class must be between 1 and 4"):
        task.training_subset(dataset, 5)


def test_views_against_index_loops():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    n = 5
    ref = {name: torch.empty_like(x) for name in VIEWS}
    for i in range(n):
        for j in range(n):
            ref["upright"][..., i, j] = x[..., i, j]
            ref["rot90"][..., i, j] = x[..., j, n - 1 - i]           # a quarter turn counter-clockwise
            ref["rot180"][..., i, j] = x[..., n - 1 - i, n - 1 - j]
            ref["upside_down"][..., i, j] = x[..., n - 1 - i, j]
            ref["mirrored"][..., i, j] = x[..., i, n - 1 - j]
    for name, view in VIEWS.items():
        assert torch.equal(view(x), ref[name]), name
    with pytest.raises(ValueError, match="views must be names of"):
        task.view_accuracies(torch.nn.Identity(), x, torch.zeros(2), ["sideways"])


@pytest.mark.parametrize("position_encoding", [False, True])
def test_pairwise_san_without_position_encoding_is_blind_to_rotations_and_flips(position_encoding):
    # Its 1x1 maps, its attention (a set operator over a footprint, with symmetric padding), the
    # 2x2 max-pools of even maps and the global average pool all commute with these views: the
    # chapter's explanation of the rotation results. The position encoding breaks it.
    torch.manual_seed(0)
    model = sanmini.create("san10_pairwise", num_classes=10, width=16, share_planes=4, kernel_size=3,
                           position_encoding=position_encoding, backend="torch").double().eval()
    for module in model.modules():                      # running statistics away from 0 and 1
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
        gaps = {name: float((model(view(x)) - logits).abs().max()) for name, view in VIEWS.items()}
    scale = float(logits.abs().max())
    if position_encoding:
        assert min(gaps[name] for name in VIEWS if name != "upright") > 1e-6 * scale
    else:
        assert max(gaps.values()) < 1e-10 * scale


def _entries():
    return [e for e in ENTRIES if e.experiment in ("comparison", "position_encoding")]


@pytest.mark.slow
def test_the_sweep_end_to_end_and_resumed(tmp_path):
    out = tmp_path / "experiments.csv"
    entries = _entries()
    assert sweep.run(out, entries, [0, 1], task=TINY, attacks=TINY_ATTACKS, progress=False) == 4
    rows = sweep.read_rows(out)
    keys = {(r["experiment"], r["variant"], r["model"], int(r["seed"])) for r in rows}
    assert keys == {(e.experiment, e.variant, e.label, s) for e in entries for s in (0, 1)}
    for r in rows:
        assert r["config"] == next(e.config.key for e in entries if (e.experiment, e.variant, e.label)
                                   == (r["experiment"], r["variant"], r["model"]))
        if r["metric"].startswith(("top1_", "fgsm_", "pgd_", "train_top1")):
            assert 0 <= float(r["value"]) <= 100
    # Every network's last epoch of training: its loss and top-1, recorded beside the rest.
    for e in entries:
        trained = {r["metric"]: float(r["value"]) for r in rows if r["seed"] == "0"
                   and (r["experiment"], r["variant"], r["model"]) == (e.experiment, e.variant, e.label)}
        assert trained["train_loss"] > 0 and "train_top1" in trained
    # "on" is the comparison's SAN10 pairwise: copied, not trained again.
    on = results.values(rows, "position_encoding", "on", "SAN10 pairwise", "top1_upright")
    assert on == results.values(rows, "comparison", "main", "SAN10 pairwise", "top1_upright")
    off_metrics = {r["metric"] for r in rows if r["variant"] == "off"}
    assert {f"top1_{v}" for v in VIEWS} <= off_metrics            # position encoding: every view

    # Nothing left: a rerun computes nothing.
    assert sweep.pending(out, entries, [0, 1], TINY_ATTACKS) == ([], [])
    assert sweep.run(out, entries, [0, 1], task=TINY, attacks=TINY_ATTACKS, progress=False) == 0

    # A sweep killed while writing (a file cut short, written before writes were atomic): seed 1
    # of "off" lost, and the comparison's last row cut.
    kept = [r for r in rows if not (r["variant"] == "off" and r["seed"] == "1")]
    kept.sort(key=lambda r: (r["experiment"] == "comparison", r["seed"], r["metric"] == "top1_upright"))
    sweep.write_rows(out, kept)
    out.write_text(out.read_text()[:-40])
    todo, copies = sweep.pending(out, entries, [0, 1], TINY_ATTACKS)
    assert copies == []
    assert [(u.configs, u.seed) for u in todo] == [(tuple(e.config for e in entries[:3]), 1), ((entries[-1].config,), 1)]
    assert not list(tmp_path.glob("*.partial"))
    assert sweep.run(out, entries, [0, 1], task=TINY, attacks=TINY_ATTACKS, progress=False) == 2
    again = sweep.read_rows(out)
    assert len(again) == len(rows)
    # The recomputed unit gives the values it gave the first time (the same seed, the same thread).
    def measured(rs):
        return {(r["experiment"], r["variant"], r["model"], r["seed"], r["metric"]): r["value"]
                for r in rs if r["metric"] != "train_seconds"}
    assert measured(again) == measured(rows)
    # The attacks of this protocol: success never falls as epsilon grows.
    assert results.cumulative_attacks(again) and results.falling(again) == []


@pytest.mark.slow
def test_attacks_are_measured_on_images_every_network_classifies_correctly(tmp_path):
    unit = sweep.units(_entries(), [0])[0]
    assert unit.attacked and len(unit.configs) == 3
    data = task.load(Task(per_class=20, epochs=2))
    models = {c: c.build().eval() for c in unit.configs}
    # Untrained networks get some digits right by chance; the attacked images are those all get right.
    rates = sweep.attack(models, 0, data, TINY_ATTACKS)
    correct = torch.stack([task.predict(m, data[1][0]) == data[1][1] for m in models.values()]).all(0)
    assert all(r["attacked_images"] == min(3, int(correct.sum())) for r in rates.values())


def test_paired_comparison_against_a_t_interval_by_hand():
    a = {0: 90.0, 1: 92.0, 2: 93.0, 3: 93.0, 4: 89.0}
    b = {0: 88.0, 1: 91.0, 2: 91.5, 3: 90.0, 4: 88.0, 5: 99.0}        # seed 5 has no pair
    d = np.array([2.0, 1.0, 1.5, 3.0, 1.0])
    half = 2.7764451051977987 * d.std(ddof=1) / math.sqrt(5)          # t(0.975, 4), from tables
    p = results.paired(a, b)
    assert p.n == 5 and p.wins == 5
    assert math.isclose(p.mean, d.mean()) and math.isclose(p.low, d.mean() - half, rel_tol=1e-9)
    assert results.verdict(p, 0.0) == results.HOLDS                   # the interval is above 0
    assert results.verdict(p, 3.0) == results.FAILS                   # and below 3
    assert results.verdict(p, 1.0) == results.UNRESOLVED
    s = results.Spread.of(a)
    assert (s.low, s.high, s.n) == (89.0, 93.0, 5) and s.outside(94.5) == 1.5 and s.outside(90) == 0
    with pytest.raises(ValueError, match="at least 2 common seeds"):
        results.paired({0: 1.0}, {0: 2.0, 1: 3.0})
    with pytest.raises(KeyError, match="metric='nope'"):
        results.values([], "comparison", "main", "ResNet26", "nope")


def test_cli_lists_what_is_left(tmp_path, capsys):
    out = tmp_path / "e.csv"
    assert cli(["--plan", "first", "--out", str(out), "--only", "position_encoding", "--seeds", "2", "--list"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("seed 0:") == 2 and "4 units to compute, 0 rows to copy" in printed
    with pytest.raises(SystemExit):
        cli(["--plan", "first", "--out", str(out), "--seeds", "0"])
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_the_first_sweep_is_complete_and_of_its_plan():
    # book/results/digits-first-sweep.csv: every entry at 5 seeds, each with the config it has now.
    rows = results.load(RECORDED)
    assert sweep.pending(RECORDED, ENTRIES, range(5)) == ([], [])
    for entry in ENTRIES:
        got = {r["config"] for r in rows if (r["experiment"], r["variant"], r["model"])
               == (entry.experiment, entry.variant, entry.label)}
        assert got == {entry.config.key}, entry
    for r in rows:
        assert r["commit"] and r["machine"] and r["date"]


def test_falling_finds_a_success_that_falls():
    row = {"experiment": "comparison", "variant": "main", "model": "ResNet26", "seed": "3"}
    rows = [{**row, "metric": f"pgd_success_eps{e:g}", "value": str(v)} for e, v in ((0.01, 10), (0.1, 40), (0.05, 50))]
    assert results.falling(rows) == [("comparison", "main", "ResNet26", 3, "pgd", 0.05, 0.1, 50.0, 40.0)]
    assert not results.cumulative_attacks(rows)


def test_fgsm_is_reported_cumulatively_over_the_grid():
    # A model that calls an image class 1 iff its mean pixel lies within 0.05 of 0.6: from 0.5, one
    # FGSM step of 0.1 lands on 0.6 and fools it, a step of 0.3 overshoots to 0.8 and does not.
    mean, std = torch.tensor(sanmini.data.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(sanmini.data.IMAGENET_STD).view(1, 3, 1, 1)

    class Band(torch.nn.Module):
        def forward(self, z):                          # z: normalised pixels
            m = (z * std + mean).mean(dim=(1, 2, 3))
            return torch.stack([torch.zeros_like(m), 100 * (0.05 - (m - 0.6).abs())], 1)

    images = torch.full((1, 3, 4, 4), 0.5)
    data = (None, ((images - mean) / std, torch.tensor([0])))
    fgsm_alone = {e: float(sweep.predict(sanmini.robustness.Normalized(Band(), sanmini.data.IMAGENET_MEAN,
                                                                       sanmini.data.IMAGENET_STD),
                                         sanmini.robustness.fgsm(sanmini.robustness.Normalized(
                                             Band(), sanmini.data.IMAGENET_MEAN, sanmini.data.IMAGENET_STD),
                                             images, torch.tensor([0]), e))[0]) for e in (0.1, 0.3)}
    assert fgsm_alone == {0.1: 1.0, 0.3: 0.0}          # the step of 0.3 alone misses
    rates = sweep.attack({"m": Band()}, 0, data, {"images": 1, "eps": (0.3, 0.1), "pgd_steps": 1})["m"]
    assert rates["attacked_images"] == 1
    assert rates["fgsm_success_eps0.1"] == 100.0 and rates["fgsm_success_eps0.3"] == 100.0
    assert rates["pgd_restarts"] == 1 and rates["pgd_steps"] == 1


# --- issue 29, item 4: Holm's correction within a family, the verdict words ----------------------

def test_holm_against_a_hand_computation():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06.
    assert results.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert results.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])          # capped at 1
    assert results.holm([0.02]) == [0.02] and results.holm([]) == []
    with pytest.raises(ValueError, match="p_values must be numbers in \\[0, 1\\], got 1.5"):
        results.holm([0.1, 1.5])


def test_paired_p_value_and_level_against_scipy():
    from scipy import stats

    a = {0: 90.0, 1: 92.0, 2: 93.0, 3: 93.0, 4: 89.0}
    b = {0: 88.0, 1: 91.0, 2: 91.5, 3: 90.0, 4: 88.0}
    d = [a[s] - b[s] for s in a]
    for threshold in (0.0, 1.0, 2.5):
        assert results.paired(a, b).p_value(threshold) == pytest.approx(stats.ttest_1samp(d, threshold).pvalue)
    p99 = results.paired(a, b, level=0.99)
    half = stats.t.ppf(0.995, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert p99.level == 0.99 and p99.high == pytest.approx(np.mean(d) + half)
    # The interval excludes a threshold exactly when the p-value is below 1 - level.
    p = results.paired(a, b).p_value(0.0)
    assert results.paired(a, b, level=1 - p * 1.01).low > 0 > results.paired(a, b, level=1 - p * 0.99).low
    with pytest.raises(ValueError, match="level must be a number between 0 and 1"):
        results.paired(a, b, level=95)


def test_family_applies_holm_and_says_not_resolved():
    seeds = range(5)
    base = {s: 0.0 for s in seeds}
    # p-values: strong and worse about 1e-7, medium 0.033 (its 95% interval alone excludes 0),
    # weak 0.097. Holm over four: medium's is multiplied by 2 (rank 3) to 0.067, not resolved.
    strong = {s: 2.0 + 0.1 * (s % 2) for s in seeds}
    medium = {0: 0.3, 1: 1.5, 2: 0.2, 3: 1.2, 4: 0.8}
    weak = {0: 0.1, 1: 1.5, 2: -0.2, 3: 1.2, 4: 0.9}
    worse = {s: -v for s, v in strong.items()}
    comparisons = {"strong": (strong, base, 0.0), "medium": (medium, base, 0.0), "weak": (weak, base, 0.0),
                   "worse": (worse, base, 0.0)}
    raw = {n: results.paired(a, b).p_value(t) for n, (a, b, t) in comparisons.items()}
    claims = results.family(comparisons)
    expected = dict(zip(raw, results.holm(list(raw.values()))))
    for name, claim in claims.items():
        assert claim.p == pytest.approx(raw[name]) and claim.p_holm == pytest.approx(expected[name])
        resolved = expected[name] <= 0.05
        assert claim.verdict == (results.UNRESOLVED if not resolved else
                                 results.HOLDS if claim.paired.mean > 0 else results.FAILS)
        if resolved:                             # a resolved claim's interval excludes the threshold
            assert claim.paired.low > 0 or claim.paired.high < 0
    assert claims["strong"].verdict == results.HOLDS and claims["worse"].verdict == results.FAILS
    assert results.verdict(results.paired(weak, base)) == results.UNRESOLVED
    assert results.verdict(results.paired(medium, base)) == results.HOLDS      # alone, at 95%
    assert claims["medium"].verdict == results.UNRESOLVED                       # within the family
    # The words a referee accepts.
    assert (results.HOLDS, results.FAILS, results.UNRESOLVED) == ("holds", "fails", "not resolved")
    # A family of one is the plain verdict at 95%.
    one = results.family({"m": (medium, base, 0.0)})["m"]
    assert one.verdict == results.verdict(results.paired(medium, base)) and one.paired.level == pytest.approx(0.95)


def test_the_fair_sweep_is_complete_of_the_plan_and_its_attacks_never_fall():
    """book/results/experiments.csv, which chapter 5b reads: every unit of the fair plan at its
    seeds with every metric it needs (training loss and top-1, step size, the training set's seed,
    every view, the attacks at every budget), nothing of another plan, PGD and FGSM success never
    falling as epsilon grows, every step size chosen inside its grid. (The first sweep's CSV
    predates that attack protocol: its PGD success falls with epsilon at some seeds.)"""
    from sanmini.experiments import FAIR_ATTACKS, FAIR_SEEDS
    from sanmini.experiments.plan import FAIR

    path = ROOT / DEFAULT_OUT["fair"]
    assert sweep.pending(path, FAIR, FAIR_SEEDS, FAIR_ATTACKS) == ([], [])
    assert sweep.stale(path, FAIR, FAIR_SEEDS) == []
    rows = results.load(path)
    assert results.cumulative_attacks(rows) and results.falling(rows) == []
    assert all(r["commit"] and r["machine"] and r["date"] for r in rows)
    for r in rows:
        if r["metric"] == "subset_seed":
            assert float(r["value"]) == int(r["seed"])
    # A step size chosen at the grid's edge would say the grid was too narrow for that network.
    raw = sweep.read_rows(path)
    grid = task.TEXTURES.lr_grid
    for entry in plan.FAIR_TUNED:
        chosen = sweep.chosen_lr(raw, entry.config, grid)
        assert chosen is None or min(grid) < chosen < max(grid), (entry.label, chosen, grid)
