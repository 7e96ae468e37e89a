"""The next sweep's plan (issue 29): networks as the paper built them at 64 x 64, the texture task,
step sizes chosen on a holdout part of the training pool, seeds per experiment, the estimate of
its time, and the sweep end to end on a tiny version of it, resumed."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import sanmini
from sanmini.experiments import plan, results, sweep, task
from sanmini.experiments.estimate import estimate, report
from sanmini.experiments.plan import FAIR, FAIR_NETWORKS, FAIR_SEEDS, STEP_SIZE, Config, Entry


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_the_paper_footprints_wherever_the_map_holds_them():
    assert plan.paper_kernels(64) == (3, 7, 7, 7, 3)     # maps 32, 16, 8, 4, 2: a 2 x 2 map holds a 3 x 3
    assert plan.paper_kernels(128) == (3, 7, 7, 7, 7)    # the paper's
    assert plan.paper_kernels(32) == (3, 7, 7, 3, 1)
    for size in (64, 128):
        model = sanmini.create("san10_pairwise", num_classes=10, width=16, share_planes=4,
                               kernels=plan.paper_kernels(size), backend="torch")
        assert model.min_input_size <= size                 # it builds and takes that input


@pytest.mark.slow
def test_every_stage_has_two_relation_and_two_weight_channels_at_the_smallest_width():
    assert plan.smallest_width(8) == 64                                # the paper's width and sharing
    assert plan.smallest_width(4) == 32 == plan.FAIR_SAN["width"] and plan.FAIR_SAN["share_planes"] == 4
    assert min(w for _, w in plan.attention_channels(32, 8)) == 1      # half the width, sharing over 8: starved
    assert plan.attention_channels(32, 4)[0] == (2, 2)
    for entry in FAIR_NETWORKS:
        if not entry.config.model.startswith("san"):
            continue
        model = entry.config.build(12)
        for k in range(5):
            sam = getattr(model, f"layer{k}")[0].sam
            relation = sam.conv1.out_channels                      # phi
            weights = sam.conv_w[-1].out_channels // (sam.taps if hasattr(sam, "taps") else 1)
            assert relation >= 2 and weights >= 2, (entry, k, relation, weights)
        assert [getattr(model, f"layer{k}")[0].sam.aggregation.kernel_size for k in range(5)] == \
            list(entry.config.kwargs["kernels"])


@pytest.mark.slow
def test_the_resnets_are_matched_in_parameters_and_in_multiply_adds():
    san = plan.Config.of("san10_pairwise", "textures").build(12)
    params, madds = _count(san), sanmini.count_flops(san, (1, 3, 64, 64))
    widths = range(20, 42, 2)
    resnets = {w: sanmini.create("resnet26", num_classes=12, width=w) for w in widths}
    by_params = {w: _count(m) for w, m in resnets.items()}
    by_madds = {w: sanmini.count_flops(m, (1, 3, 64, 64)) for w, m in resnets.items()}
    assert min(widths, key=lambda w: abs(by_params[w] - params)) == plan.FAIR_DEFAULTS["resnet26"]["width"]
    assert min(widths, key=lambda w: abs(by_madds[w] - madds)) == plan.MADDS_WIDTH
    labels = {e.label: e.config for e in FAIR if e.experiment == "comparison"}
    assert labels["ResNet26 (multiply-adds)"].kwargs["width"] == plan.MADDS_WIDTH


def test_the_ablations_as_the_paper_ran_them():
    variants = {x: [e.variant for e in FAIR if e.experiment == x] for x in plan.FAIR_EXPERIMENTS}
    assert sorted(variants["pairwise_relation"]) == sorted(set(sanmini.nn.PAIRWISE_RELATIONS) - {"summation"})
    assert sorted(variants["patchwise_relation"]) == sorted(sanmini.nn.PATCHWISE_RELATIONS)
    footprints = {e.variant: e.config.kwargs["kernels"] for e in FAIR if e.experiment == "footprint"}
    assert footprints == {"3": (3, 3, 3, 3, 3), "5": (3, 5, 5, 5, 3), "7": (3, 7, 7, 7, 3)}
    assert all(e.config.kwargs.get("kernels") != (7, 7, 7, 3, 3) for e in FAIR)
    default = next(e.config for e in FAIR if e.experiment == "comparison" and e.label == "SAN10 pairwise")
    assert next(e.config for e in FAIR if (e.experiment, e.variant) == ("footprint", "7")) == default
    assert {e.config for e in FAIR if e.experiment == "position_encoding"} == \
        {default, Config.of("san10_pairwise", "textures", position_encoding=False)}
    # The training-length check: the comparison's four networks, each trained twice as long.
    compared = [e for e in FAIR if e.experiment == "comparison"]
    longer = [e for e in FAIR if e.experiment == plan.TRAINING_LENGTH]
    assert [(e.label, e.config.network, e.config.epochs) for e in longer] == \
        [(e.label, e.config, 2 * task.TEXTURES.epochs) for e in compared]
    assert list(FAIR_SEEDS[plan.TRAINING_LENGTH]) == list(FAIR_SEEDS["comparison"])


def test_seeds_per_experiment_and_a_tuning_run_per_network_and_step_size():
    assert len(FAIR_SEEDS["comparison"]) >= 8
    for x in ("footprint", "position_encoding", "pairwise_relation", "patchwise_relation"):
        assert len(FAIR_SEEDS[x]) >= 5, x
    assert all(len(FAIR_SEEDS[x]) >= 3 for x in plan.FAIR_EXPERIMENTS if x != STEP_SIZE)
    compared = {e.config for e in FAIR_NETWORKS if e.experiment == "comparison"}
    tuning = [e for e in FAIR if e.experiment == STEP_SIZE]
    assert {(e.config.network, e.config.tune_lr) for e in tuning} == {(c, lr) for c in compared for lr in (0.1, 0.2, 0.4, 0.8)}
    for entry in FAIR_NETWORKS:               # every other network trains at the step size of the one it varies
        source = sweep.tuned_as(entry.config, FAIR)
        assert source in compared and source.model == entry.config.model
    assert task.TEXTURES.lr_grid == (0.1, 0.2, 0.4, 0.8)
    todo = sweep.units(FAIR, FAIR_SEEDS)
    first_network = next(i for i, u in enumerate(todo) if u.configs[0].tune_lr is None)
    assert all(u.configs[0].tune_lr is None for u in todo[first_network:])       # tuning runs first
    assert sum(u.attacked for u in todo) == 8


def test_the_chosen_step_size_is_the_best_on_the_holdout():
    config = Config.of("resnet26", "textures")
    def rows(scores):
        return [{"experiment": STEP_SIZE, "variant": f"{lr:g}", "model": config.name, "seed": "0", "metric": m,
                 "value": str(v), "config": config.tuned(lr).key} for lr, (top1, loss) in scores.items()
                for m, v in (("holdout_top1", top1), ("holdout_loss", loss))]
    grid = (0.1, 0.2, 0.4)
    assert sweep.chosen_lr(rows({0.1: (50, 1.0), 0.2: (70, 0.9), 0.4: (60, 0.8)}), config, grid) == 0.2
    assert sweep.chosen_lr(rows({0.1: (70, 1.0), 0.2: (70, 0.9), 0.4: (60, 0.8)}), config, grid) == 0.2   # tie: loss
    assert sweep.chosen_lr(rows({0.1: (50, 1.0), 0.2: (70, 0.9)}), config, grid) is None            # 0.4 not yet


def test_a_variant_trains_at_the_step_size_chosen_for_the_network_it_varies():
    default = Config.of("san10_pairwise", "textures")
    variant = Config.of("san10_pairwise", "textures", relation="dot")
    rows = [{"experiment": STEP_SIZE, "variant": f"{lr:g}", "model": default.name, "seed": "0", "metric": m,
             "value": str(v), "config": default.tuned(lr).key}
            for lr, top1 in ((0.1, 50), (0.2, 60), (0.4, 70), (0.8, 65)) for m, v in (("holdout_top1", top1), ("holdout_loss", 1))]
    unit = sweep.Unit((variant,), 0)
    chosen = sweep._with_choices(unit, None, rows, FAIR)
    assert chosen["textures"].lr_of(variant.key) == 0.4
    with pytest.raises(ValueError, match=r"no step size chosen for san10_pairwise relation=dot: san10_pairwise's "
                                         r"\(the network it varies\) tuning runs at 0.1, 0.2, 0.4, 0.8 are not all recorded"):
        sweep._with_choices(unit, None, rows[:6], FAIR)
    # Tuning runs of the variant itself, where a plan has them, decide instead.
    assert sweep.tuned_as(variant, FAIR + plan.tuning_entries([Entry("x", "y", "z", variant)], (0.1,))) == variant


@pytest.mark.slow
def test_summation_is_subtraction_in_disguise_so_the_sweep_trains_one_of_them():
    """A SAN10 with summation whose every psi (conv2, weight and bias) is negated computes what the
    SAN10 with subtraction and the same weights computes (Zhao et al.'s equation 3 with
    delta = phi + psi against phi - psi), in training and in evaluation mode."""
    torch.manual_seed(0)
    kwargs = dict(num_classes=12, width=16, share_planes=4, kernels=(3, 5, 5, 3, 3), backend="torch")
    summation = sanmini.create("san10_pairwise", relation="summation", **kwargs).double()
    subtraction = sanmini.create("san10_pairwise", relation="subtraction", **kwargs).double()
    subtraction.load_state_dict(summation.state_dict())
    blocks = [m for m in subtraction.modules() if isinstance(m, sanmini.nn.PairwiseAttention)]
    assert len(blocks) == 10
    with torch.no_grad():
        for sam in blocks:
            sam.conv2.weight.neg_()
            sam.conv2.bias.neg_()
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64)
    for mode in (True, False):
        summation.train(mode), subtraction.train(mode)
        torch.testing.assert_close(subtraction(x), summation(x), rtol=1e-10, atol=1e-10)
    assert "summation" not in plan.FAIR_PAIRWISE_RELATIONS and "subtraction" in plan.FAIR_PAIRWISE_RELATIONS


def test_views_with_a_three_quarter_turn_and_per_class_accuracy():
    x = torch.randn(4, 3, 5, 5)
    turned = task.ALL_VIEWS["rot270"](x)
    for i in range(5):
        for j in range(5):
            assert torch.equal(turned[..., i, j], x[..., 4 - j, i])        # three quarters counter-clockwise
    assert torch.equal(task.ALL_VIEWS["rot270"](task.ALL_VIEWS["rot90"](x)), x)

    class Fixed(torch.nn.Module):                                           # predicts class 0 always
        def forward(self, x):
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1)
    labels = torch.tensor([0, 0, 1, 0])
    got = task.view_accuracies(Fixed(), x, labels, ["upright", "rot270"], per_class=(0, 1))
    assert got == {"top1_upright": 75.0, "top1_upright_class0": 100.0, "top1_upright_class1": 0.0,
                   "top1_rot270": 75.0, "top1_rot270_class0": 100.0, "top1_rot270_class1": 0.0}
    with pytest.raises(ValueError, match=r"per_class must name classes of the validation images, got \[6\]"):
        task.view_accuracies(Fixed(), x, labels, ["upright"], per_class=(6,))


TINY = dataclasses.replace(task.TEXTURES, per_class=1, val_per_class=2, epochs=1, batch_size=12)
TINY_ATTACKS = {"images": 3, "eps": (0.01, 0.04), "pgd_steps": 2, "pgd_restarts": 2}


@pytest.mark.slow
def test_each_seed_redraws_the_training_set():
    (a, _), (va, _) = task.load(TINY, seed=0)
    (b, _), (vb, _) = task.load(TINY, seed=1)
    assert not torch.equal(a, b) and torch.equal(va, vb)
    with pytest.raises(ValueError, match="seed must be given"):
        task.load(TINY)
    (tune, _), (holdout, _) = task.load_tuning(TINY)
    assert tune.shape[0] == 12 and holdout.shape[0] == 24


def test_estimate_from_one_timed_step():
    todo = sweep.units([e for e in FAIR if e.experiment in ("comparison", "sharing")], {"comparison": [0], "sharing": [0]})
    timed = []
    def timer(config, setup, threads):
        timed.append(config)
        return 2.0
    out = estimate(todo, task=TINY, attacks=TINY_ATTACKS, timer=timer)
    assert len(timed) == len({c for u in todo for c in u.configs})           # each network timed once
    alone = [s for u, s in out if not u.attacked]
    assert alone == [TINY.steps() * 2.0] * len(alone)
    attacked = next(s for u, s in out if u.attacked)
    passes = 2 * (1 + 2 * 2 + 1)
    assert attacked == pytest.approx(4 * (TINY.steps() * 2.0 + passes * 3 / 12 * 2.0))
    text = report(out, jobs=2)
    assert text.count("\n") == len(out) and "with 2 jobs" in text


@pytest.mark.slow
def test_a_tiny_fair_sweep_end_to_end_with_tuning_and_a_resume(tmp_path):
    # Narrower networks than the plan's (the machinery is the same), one image of each class.
    t = "textures"
    san = Config.of("san10_pairwise", t, width=16, share_planes=4)
    networks = [Entry("comparison", "main", "SAN10 pairwise", san),
                Entry("comparison", "main", "ResNet26", Config.of("resnet26", t, width=8)),
                Entry("position_encoding", "on", "SAN10 pairwise", san),
                Entry("position_encoding", "off", "SAN10 pairwise", Config.of("san10_pairwise", t, width=16, share_planes=4,
                                                                              position_encoding=False))]
    tiny = dataclasses.replace(TINY, lr_grid=(0.1, 0.4))
    entries = networks + plan.tuning_entries(networks, tiny.lr_grid)
    seeds = {"comparison": [0, 1], "position_encoding": [0], STEP_SIZE: [0]}
    out = tmp_path / "e.csv"
    computed = sweep.run(out, entries, seeds, task=tiny, attacks=TINY_ATTACKS, progress=False)
    assert computed == 3 * 2 + 2 + 1                     # 6 tuning runs, 2 comparisons, "off"
    rows = sweep.read_rows(out)
    for entry in networks:
        for seed in seeds[entry.experiment]:
            got = {r["metric"]: float(r["value"]) for r in rows if (r["experiment"], r["variant"], r["model"],
                   r["seed"]) == (entry.experiment, entry.variant, entry.label, str(seed))}
            assert got["lr"] == sweep.chosen_lr(rows, entry.config, tiny.lr_grid)
            assert got["subset_seed"] == seed and got["train_loss"] > 0 and 0 <= got["train_top1"] <= 100
            assert {f"top1_{v}" for v in task.ALL_VIEWS} <= set(got)
    assert results.cumulative_attacks(rows) and results.falling(rows) == []
    assert sweep.pending(out, entries, seeds, TINY_ATTACKS) == ([], [])
    # A resume: the comparison at seed 1 lost; only it is computed again, at the recorded step sizes.
    sweep.write_rows(out, [r for r in rows if not (r["experiment"] == "comparison" and r["seed"] == "1")])
    todo, _ = sweep.pending(out, entries, seeds, TINY_ATTACKS)
    assert [(u.seed, u.attacked) for u in todo] == [(1, True)]
    assert sweep.run(out, entries, seeds, task=tiny, attacks=TINY_ATTACKS, progress=False) == 1
    again = sweep.read_rows(out)
    def measured(rs):
        return {(r["experiment"], r["variant"], r["model"], r["seed"], r["metric"]): r["value"]
                for r in rs if r["metric"] != "train_seconds"}
    assert measured(again) == measured(rows)


def test_the_cli_estimates_and_lists_the_fair_plan(tmp_path, monkeypatch, capsys):
    from sanmini.experiments import estimate as module
    from sanmini.experiments.__main__ import cli

    monkeypatch.setattr(module, "step_seconds", lambda config, setup, threads: 1.0)
    out = tmp_path / "e.csv"
    assert cli(["--out", str(out), "--only", "sharing", "--estimate"]) == 0
    printed = capsys.readouterr().out
    # "none" is the comparison's SAN10 pairwise (its 8 seeds not asked for: the sharing default is
    # trained at seeds 0-2 alone), phi_psi alone; the 3 tuning runs of SAN10 pairwise, whose
    # chosen step size both train at (4 of them, one per step size).
    steps = task.TEXTURES.steps()
    assert printed.count(f"{steps / 60:8.1f} min  seed") == 10
    assert "10 units to compute, 0 rows to copy" in printed and "with 2 jobs" in printed
    assert cli(["--out", str(out), "--only", "comparison", "--list"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert sum("tune_lr" in line and "width=32" in line for line in lines) == 4
    assert printed.count("+ resnet26 width=32\n") == 8 and "24 units to compute" in printed
    assert not out.exists()


@pytest.mark.parametrize("call, message", [
    (lambda: sweep.units(FAIR, {"comparison": range(2)}), r"seeds has no entry for experiment 'pairwise_relation'"),
    (lambda: Config.of("resnet26", "tex"), r"task must be one of \['', 'textures'\], got 'tex'"),
    (lambda: task.load(task.Task(data="cifar")), r"task.data must be 'digits' or 'textures', got 'cifar'"),
    (lambda: task.load(task.Task(views=("sideways",))), r"task.views must be names of"),
    (lambda: task.load("textures"), r"task must be a sanmini.experiments.Task, got str"),
    (lambda: sweep.task_of(Config("resnet26", (), "tex")), r"no task 'tex' \(config resnet26\)"),
    (lambda: plan.paper_kernels(1), r"image_size 1 leaves stage 0 without pixels"),
])
def test_bad_plans_and_tasks_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_the_first_plan_is_unchanged_for_the_recorded_csv():
    # book/results/digits-first-sweep.csv was recorded with the first plan's names: same keys, views, task.
    from sanmini.experiments import ENTRIES, TASK, VIEWS
    assert list(VIEWS) == ["upright", "rot90", "rot180", "upside_down", "mirrored"]
    assert TASK.data == "digits" and not TASK.redraw and not TASK.lr_grid and TASK.steps() == 160
    assert all(e.config.task == "" and '"task"' not in e.config.key for e in ENTRIES)
    assert ENTRIES[0].config.key == ('{"backend": "cpu", "gamma_layers": 2, "kernels": [3, 3, 3, 3, 3], "model": '
                                     '"san10_pairwise", "position_encoding": true, "relation": "subtraction", '
                                     '"share": "none", "share_planes": 4, "width": 16}')


@pytest.mark.slow
def test_a_run_trained_for_longer_borrows_its_networks_step_size_and_records_every_epoch(tmp_path):
    t = "textures"
    net = Config.of("resnet26", t, width=8)
    longer = net.trained_for(3)
    assert longer.network == net and longer.epochs == 3 and net.epochs is None and "epochs=3" in longer.name
    assert Config.of("resnet26", t, width=8, ).trained_for(3).trained_for(2).epochs == 2
    assert longer.run_task(TINY) == dataclasses.replace(TINY, epochs=3) and net.run_task(TINY) is TINY
    assert longer.tuned(0.1).network == net          # what a tuning run tunes: the network alone
    tiny = dataclasses.replace(TINY, lr_grid=(0.1, 0.4))
    entries = [Entry(plan.TRAINING_LENGTH, "3", "ResNet26", longer)] + plan.tuning_entries(
        [Entry("comparison", "main", "ResNet26", net)], tiny.lr_grid)
    assert sweep.tuned_as(longer, entries) == net
    out = tmp_path / "e.csv"
    assert sweep.run(out, entries, {plan.TRAINING_LENGTH: [0], STEP_SIZE: [0]}, task=tiny, progress=False) == 3
    rows = sweep.read_rows(out)
    got = {r["metric"]: float(r["value"]) for r in rows if r["experiment"] == plan.TRAINING_LENGTH}
    assert got["lr"] == sweep.chosen_lr(rows, net, tiny.lr_grid)
    assert [k for k in got if k.startswith("train_loss_epoch")] == [f"train_loss_epoch{k}" for k in (1, 2, 3)]
    assert got["train_loss_epoch3"] == got["train_loss"] and got["train_top1_epoch3"] == got["train_top1"]
    # The same network trained at the same seed for 3 epochs by task.fit directly: the same losses.
    (x, y), _ = task.load(tiny, seed=0)
    from sanmini.train import seed_everything
    seed_everything(0)
    model = net.build(tiny.num_classes)
    again = task.fit(model, x, y, 0, dataclasses.replace(tiny, epochs=3), lr=got["lr"], curve=True)
    for k in (1, 2, 3):
        assert again[f"train_loss_epoch{k}"] == pytest.approx(got[f"train_loss_epoch{k}"], rel=1e-4)
    with pytest.raises(ValueError, match="epochs must be an int of at least 1, got 0"):
        net.trained_for(0)
