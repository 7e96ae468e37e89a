"""sanmini.train: the recipe's pieces against independent references, then whole runs on a tiny
generated image folder: one process, two processes under torchrun, kill and resume, evaluation of
a released-checkpoint stand-in, and the errors for bad input.

The runs use a narrow SAN10 (width 16, 3 x 3 footprints, the plain-torch backend) on 64 x 64
crops of 18 training and 9 validation images, so each epoch takes about a second on a CPU.
"""
import csv
import math
import multiprocessing
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from sklearn.metrics import top_k_accuracy_score

import sanmini
from conftest import write_class_folders
from sanmini.data.folders import IMAGENET_MEAN, IMAGENET_STD, eval_resize
from sanmini.models import create, load_pretrained
from sanmini.train import main, parse_args
from sanmini.train import runner as run_module
from sanmini.train.checkpoint import atomic_save
from sanmini.train.config import TrainConfig, parse_value
from sanmini.train.distributed import World
from sanmini.train.engine import topk_correct
from sanmini.train.recipe import SmoothedCrossEntropy, make_optimizer, make_scheduler, param_groups
from sanmini.train.runner import check_resumable, per_process

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("apple", "banana", "cherry")
TINY_SAN = dict(width=16, share_planes=4, kernel_size=3, backend="torch")
TINY = ["--model", "san10_pairwise", *[a for k, v in TINY_SAN.items() for a in ("--model-arg", f"{k}={v}")],
        "--image-size", "64", "--batch-size", "8", "--workers", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny models run faster so on a shared two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """DATA/train/CLASS/k.JPEG (6 per class) and DATA/val/CLASS/k.JPEG (3 per class), 72 x 80.
    Each class has its own mean colour, so a model can learn something."""
    return write_class_folders(tmp_path_factory.mktemp("data"), CLASSES, {"train": 6, "val": 3})


def tiny_model(num_classes=len(CLASSES)):
    return create("san10_pairwise", num_classes=num_classes, **TINY_SAN)


def read_log(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# --- the recipe -----------------------------------------------------------------------------

def test_label_smoothing_is_the_reference_one_against_a_hand_computation():
    torch.manual_seed(0)
    logits, target, eps = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 3, 4, 3]), 0.1
    expected = 0.0
    for row, t in zip(logits.tolist(), target.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        expected += -sum(((1 - eps) if j == t else eps / 4) * (v - log_z) for j, v in enumerate(row))
    expected /= 4
    assert SmoothedCrossEntropy(eps)(logits, target).item() == pytest.approx(expected, rel=1e-12)
    # torch's eps/K to every class is another loss, kept as an option:
    uniform = SmoothedCrossEntropy(eps, style="uniform")(logits, target)
    torch.testing.assert_close(uniform, torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, target))
    assert abs(uniform.item() - expected) > 1e-4
    plain = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(SmoothedCrossEntropy(0.0)(logits, target), plain)


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _torch_cosine(lr, t_max, steps):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    return _lrs(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max), optimizer, steps)


def test_cosine_schedule_is_torch_cosine_annealing_stepped_per_epoch():
    steps_per_epoch, epochs = 3, 5
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    ours = _lrs(make_scheduler(optimizer, steps_per_epoch, epochs), optimizer, steps_per_epoch * epochs)
    per_epoch = _torch_cosine(0.4, epochs, epochs)
    assert ours == pytest.approx([per_epoch[i // steps_per_epoch] for i in range(len(ours))], rel=1e-12)
    # Option: stepped every iteration.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    ours = _lrs(make_scheduler(optimizer, steps_per_epoch, epochs, per_step=True), optimizer, 15)
    assert ours == pytest.approx(_torch_cosine(0.4, 15, 15), rel=1e-12, abs=1e-15)
    # Option: one epoch of linear warm-up, then the cosine over the 4 others.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    ours = _lrs(make_scheduler(optimizer, steps_per_epoch, epochs, warmup_epochs=1), optimizer, 15)
    assert ours[:3] == pytest.approx([0.4 / 3, 0.8 / 3, 0.4])
    assert ours[3:] == pytest.approx([v for v in _torch_cosine(0.4, 4, 4) for _ in range(3)], rel=1e-12)


def test_weight_decay_on_every_parameter_by_default():
    model = tiny_model()
    (group,) = param_groups(model, 1e-4)
    assert group["weight_decay"] == 1e-4 and len(group["params"]) == len(list(model.parameters()))
    decay, exempt = param_groups(model, 1e-4, decay_norm_and_bias=False)
    # In these models the one-dimensional parameters are exactly the norm weights and the biases.
    assert {id(p) for p in exempt["params"]} == {id(p) for p in model.parameters() if p.ndim == 1}
    assert exempt["weight_decay"] == 0 and len(decay["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    optimizer = make_optimizer(model, 0.1)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.param_groups[0]["weight_decay"] == 1e-4


def test_topk_accuracy_matches_scikit_learn():
    torch.manual_seed(1)
    logits, target = torch.randn(50, 7), torch.randint(0, 7, (50,))
    top1, top5 = topk_correct(logits, target)
    for count, k in ((top1, 1), (top5, 5)):
        assert count.item() / 50 == pytest.approx(top_k_accuracy_score(target, logits, k=k, labels=range(7)))
    assert [c.item() for c in topk_correct(torch.randn(6, 3), torch.arange(6) % 3)][1] == 6  # k > K


# --- the configuration ----------------------------------------------------------------------

def test_defaults_are_the_paper_recipe():
    config = parse_args(["DATA"])
    assert (config.epochs, config.batch_size, config.lr, config.momentum, config.weight_decay) == \
        (100, 256, 0.1, 0.9, 1e-4)
    assert (config.label_smoothing, config.smoothing_style, config.warmup_epochs) == (0.1, "reference", 0)
    assert config.decay_norm_and_bias and not config.schedule_per_step and not config.amp
    assert config.image_size == 224 and eval_resize(config.image_size) == 256
    assert config.crop_min_scale == 0.08 and config.flip                  # RandomResizedCrop, flips
    assert config.lr_scaling == "linear" and config.out_dir == Path("runs/san10_pairwise")


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_sets_options_and_flags_win(tmp_path, suffix):
    text = {".yaml": "data: /d\nbatch_size: 16\namp: true\nmodel_args: {width: 16, kernels: [3, 3, 3, 3, 3]}\n",
            ".toml": 'data = "/d"\nbatch_size = 16\namp = true\n[model_args]\nwidth = 16\nkernels = [3, 3, 3, 3, 3]\n'}
    path = tmp_path / f"run{suffix}"
    path.write_text(text[suffix])
    config = parse_args(["--config", str(path), "--batch-size", "32", "--model-arg", "width=8"])
    assert config.data == "/d" and config.batch_size == 32 and config.amp
    assert config.model_args == {"width": 8, "kernels": (3, 3, 3, 3, 3)}
    assert parse_args(["--config", str(path), "other"]).data == "other"


def test_config_file_and_flag_errors(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("batch_sise: 16\n")
    with pytest.raises(ValueError, match=f"--config {bad_key}: unknown key 'batch_sise'"):
        parse_args(["--config", str(bad_key)])
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('epochs = "many"\n')
    with pytest.raises(ValueError, match="epochs must be an integer, got 'many'"):
        parse_args(["--config", str(bad_type)])
    for argv, message in ((["D", "--batch-size", "0"], "--batch-size must be at least 1"),
                          (["D", "--epochs", "2", "--stop-after-epoch", "3"], "--stop-after-epoch must be in 1..2"),
                          (["D", "--evaluate"], "--evaluate needs --weights"),
                          (["D", "--model-arg", "width"], "--model-arg expects KEY=VALUE"),
                          (["D", "--label-smoothing", "1"], "--label-smoothing must be in"),
                          ([], "no data folder")):
        with pytest.raises(ValueError, match=message):
            parse_args(argv)
    with pytest.raises(SystemExit):
        parse_args(["D", "--model", "san11"])


def test_model_arg_values():
    assert [parse_value(v) for v in ("16", "true", "False", "3,7,7", "[3, 7]", "(1, 2)", "0.5", "torch", "none")] \
        == [16, True, False, (3, 7, 7), (3, 7), (1, 2), 0.5, "torch", None]


def test_recompute_flag_and_config_key(tmp_path):
    assert not parse_args(["D"]).recompute
    assert parse_args(["D", "--recompute"]).recompute
    path = tmp_path / "run.yaml"
    path.write_text("data: D\nrecompute: true\n")
    assert parse_args(["--config", str(path)]).recompute
    assert not parse_args(["--config", str(path), "--no-recompute"]).recompute
    with pytest.raises(ValueError, match="--recompute recomputes the attention weights of a SAN; "
                                         "--model resnet26 has no attention layers"):
        parse_args(["D", "--model", "resnet26", "--recompute"])


def test_batch_size_must_divide_among_processes(folder, monkeypatch):
    assert per_process(256, 8) == 32
    with pytest.raises(ValueError, match="--batch-size 10 is not divisible by the number of processes, 4"):
        per_process(10, 4)
    # Through the command line, with a world of two processes (no process group needed to fail).
    monkeypatch.setattr(run_module, "setup", lambda device: World(0, 2, 0, torch.device("cpu")))
    with pytest.raises(ValueError, match="--batch-size 9 is not divisible by the number of processes, 2"):
        main([str(folder), *TINY, "--batch-size", "9"])


# --- whole runs -----------------------------------------------------------------------------

def test_one_epoch_on_one_process(folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [str(folder), *TINY, "--epochs", "1", "--out", str(out), "--progress"]
    result = main(argv)
    (row,) = read_log(out / "log.csv")
    assert row["epoch"] == "1" and row["step"] == "3"                    # 18 images, batches of 8
    assert math.isfinite(float(row["train_loss"])) and 0.5 < float(row["train_loss"]) < 5
    assert float(row["lr"]) == pytest.approx(0.1 * 8 / 256)
    assert float(row["images_per_s"]) > 0 and float(row["peak_memory_mib"]) > 0
    assert 0 <= float(row["val_top1"]) <= float(row["val_top5"]) == 100   # 3 classes: top-5 is all
    shown = capsys.readouterr()
    assert "epoch 1/1" in shown.err                                       # the tqdm bar
    assert f"last checkpoint: {out / 'last.pt'}" in shown.out and "best  (epoch 1)" in shown.out
    # Both checkpoints load through the released-checkpoint loader, and hold the run's model.
    for name in ("last.pt", "best.pt"):
        model = load_pretrained(tiny_model(), out / name)
        for key, value in result["model"].state_dict().items():
            assert torch.equal(model.state_dict()[key], value)
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 3 and len(checkpoint["rng"]) == 1
    assert {"optimizer", "scheduler", "scaler", "config"} <= set(checkpoint)
    assert not any(k.startswith("module.") for k in checkpoint["state_dict"])
    # The written config.yaml is a config file that gives the same run.
    assert parse_args(["--config", str(out / "config.yaml")]) == parse_args(argv)


def test_two_processes_under_torchrun_synchronise_and_only_rank_0_writes(folder, tmp_path):
    out, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "ddp_probe.py"), str(probe), str(folder), *TINY, "--epochs", "1",
               "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(probe / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, final in ranks[0]["final"].items():
        assert torch.equal(ranks[0]["initial"][key], ranks[1]["initial"][key])
        assert torch.equal(final, ranks[1]["final"][key]), key               # gradients were averaged
    assert any(not torch.equal(ranks[0]["initial"][k], v) for k, v in ranks[0]["final"].items())
    assert ranks[1]["writes"] == []
    written = {Path(p).name for p in ranks[0]["writes"]}
    assert {"last.pt", "best.pt", "log.csv", "config.yaml"} <= written
    assert done.stdout.count("sanmini.train: san10_pairwise on") == 1        # one summary, rank 0's
    (row,) = read_log(out / "log.csv")
    assert row["step"] == "3"                                                # 18 images, 2 x 4 per step
    saved = weights(out / "last.pt")
    assert all(torch.equal(saved[k], v) for k, v in ranks[0]["final"].items())


def test_recompute_reaches_the_model_and_trains_the_same_weights(folder, tmp_path, monkeypatch):
    """An epoch with --recompute: every attention layer checkpoints its weight branch (10 layers,
    3 steps), and the run ends with the weights and batch-norm statistics of the run without."""
    from sanmini.nn import recompute as module
    calls = []
    real = module.checkpoint
    monkeypatch.setattr(module, "checkpoint", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    common = [str(folder), *TINY, "--epochs", "1"]
    plain = main([*common, "--out", str(tmp_path / "plain")])
    assert calls == []
    again = main([*common, "--out", str(tmp_path / "recompute"), "--recompute"])
    assert len(calls) == 10 * 3
    assert {m.sam.recompute for m in again["model"].modules() if hasattr(m, "sam")} == {True}
    saved = weights(tmp_path / "recompute" / "last.pt")
    for key, value in plain["model"].state_dict().items():
        torch.testing.assert_close(saved[key], value, msg=key)


def test_kill_and_resume_gives_the_uninterrupted_run(folder, tmp_path):
    common = [str(folder), *TINY, "--epochs", "2", "--workers", "1"]   # augmentation in a worker process
    main([*common, "--out", str(tmp_path / "straight")])
    main([*common, "--out", str(tmp_path / "killed"), "--stop-after-epoch", "1"])
    after_one = weights(tmp_path / "killed" / "last.pt")
    with open(tmp_path / "killed" / "log.csv", "a") as f:     # killed after logging epoch 2, before its checkpoint
        f.write("2,6,0.1,9,9,9,9,9,9,9,9,9\n")
    main([*common, "--out", str(tmp_path / "killed"), "--resume", str(tmp_path / "killed" / "last.pt")])

    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"] == 2 and resumed["step"] == straight["step"] == 6
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert any(not torch.equal(after_one[k], v) for k, v in straight["state_dict"].items())
    for a, b in zip(straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    rows = {name: read_log(tmp_path / name / "log.csv") for name in ("straight", "killed")}
    assert [r["epoch"] for r in rows["killed"]] == ["1", "2"]
    for key in ("lr", "train_loss", "train_top1", "val_loss", "val_top1"):
        assert [r[key] for r in rows["killed"]] == [r[key] for r in rows["straight"]]


def test_resume_refuses_another_recipe_or_a_weights_only_file(tmp_path):
    config = TrainConfig(data="D", **{"model_args": TINY_SAN})
    saved = {"optimizer": {}, "epoch": 1, "config": config.to_dict()}
    check_resumable(saved, config, "last.pt")
    with pytest.raises(ValueError, match="--resume last.pt was written by a run with other options: "
                                         "--lr 0.1 there, 0.2 here"):
        check_resumable(saved, TrainConfig(data="D", model_args=TINY_SAN, lr=0.2), "last.pt")
    with pytest.raises(ValueError, match="not a sanmini.train checkpoint.*--weights released.pth"):
        check_resumable({"state_dict": {}}, config, "released.pth")


def _write_then_die(path, payload):
    """In a forked child: start an atomic save, and die (as if by SIGKILL) in the middle."""
    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 only the beginning of a checkpoint")
        f.flush()
        os._exit(9)
    torch.save = dying_save
    atomic_save(payload, path)


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_a_save_killed_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1, "w": torch.arange(4.0)}, path)
    child = multiprocessing.get_context("fork").Process(target=_write_then_die,
                                                        args=(path, {"epoch": 2, "w": torch.zeros(4)}))
    child.start()
    child.join()
    assert child.exitcode == 9
    survivor = torch.load(path, weights_only=True)
    assert survivor["epoch"] == 1 and torch.equal(survivor["w"], torch.arange(4.0))
    # An exception during the write (disk full, Ctrl-C) leaves no temporary file either.
    leftovers = set(tmp_path.iterdir())

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("No space left on device")
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"epoch": 3}, path)
    assert set(tmp_path.iterdir()) == leftovers and torch.load(path, weights_only=True)["epoch"] == 1


def test_evaluate_a_released_checkpoint_stand_in(folder, tmp_path, capsys):
    """A checkpoint in the reference implementation's format ('module.' keys under 'state_dict',
    with its optimizer and epoch), evaluated through --evaluate --weights, against top-1 and
    top-5 computed here image by image."""
    torch.manual_seed(3)
    model = tiny_model().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))     # not the initialisation: any fixed weights
    released = tmp_path / "san10_pairwise_tiny.pth"
    torch.save({"epoch": 100, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {}, "top1_val": 0.0}, released)
    result = main([str(folder), *TINY, "--evaluate", "--weights", str(released), "--batch-size", "4"])

    correct1 = correct5 = 0
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / "val" / name).iterdir()):
            image = TF.center_crop(TF.resize(Image.open(path).convert("RGB"), 73), 64)    # 73 = 64 * 256 / 224
            x = TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)[None]
            with torch.no_grad():
                ranking = model(x)[0].argsort(descending=True).tolist()
            correct1 += ranking[0] == label
            correct5 += label in ranking[:5]
    assert result["val"]["images"] == 9
    assert result["val"]["top1"] == pytest.approx(100 * correct1 / 9)
    assert result["val"]["top5"] == pytest.approx(100 * correct5 / 9)
    assert f"with {released}" in capsys.readouterr().out
    # The weights of another model: an error naming the file and what does not fit.
    other = tmp_path / "resnet26.pth"
    torch.save({"state_dict": create("resnet26", num_classes=3, width=8).state_dict()}, other)
    with pytest.raises(ValueError, match=f"{other} does not fit the model SAN: .* missing keys"):
        main([str(folder), *TINY, "--evaluate", "--weights", str(other)])


def test_bad_data_errors_name_the_path(folder, tmp_path):
    argv = [*TINY, "--epochs", "1", "--out", str(tmp_path / "run")]
    with pytest.raises(FileNotFoundError, match=f"data folder {tmp_path / 'nowhere'} does not exist"):
        main([str(tmp_path / "nowhere"), *argv])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no train folder {tmp_path / 'empty' / 'train'}"):
        main([str(tmp_path / "empty"), *argv])
    broken = tmp_path / "broken"
    for split in ("train", "val"):
        for name in CLASSES:
            (broken / split / name).mkdir(parents=True)
            for k in range(2):
                (broken / split / name / f"{k}.JPEG").write_bytes((folder / split / name / "0.JPEG").read_bytes())
    bad = broken / "train" / "banana" / "1.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    # Found before the first epoch by reading the headers: no step taken, no checkpoint written.
    with pytest.raises(ValueError, match=f"1 of 12 image files cannot be read as images: {bad} "):
        main([str(broken), *argv, "--batch-size", "6"])
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "log.csv").exists()
    # Without the check, the loader names it when its turn comes.
    with pytest.raises(ValueError, match=f"cannot read the image {bad}"):
        main([str(broken), *argv, "--batch-size", "6", "--no-check-images", "--overwrite"])
    for image in (broken / "val" / "cherry").iterdir():
        image.unlink()
    argv[-1] = str(tmp_path / "run2")     # the run above crashed in its first epoch, after writing config.yaml
    with pytest.raises(ValueError, match=f"class folder {broken / 'val' / 'cherry'} has no images"):
        main([str(broken), *argv])
    with pytest.raises(ValueError, match="--num-classes 5, but .* has 3 class folders"):
        main([str(folder), *argv, "--num-classes", "5"])


@pytest.mark.parametrize("dtype, native_bfloat16", [("bfloat16", True), ("bfloat16", False), ("float16", False)])
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")   # GradScaler skips a step
def test_mixed_precision_on_cpu(folder, tmp_path, dtype, native_bfloat16, monkeypatch, capsys):
    """--amp trains on a CPU in both dtypes; bfloat16 on a CPU without bfloat16 instructions (here
    pretended, either way) warns that it is slow there, and only then."""
    monkeypatch.setattr(run_module, "cpu_has_bfloat16", lambda: native_bfloat16)
    result = main([str(folder), "--model", "resnet26", "--model-arg", "width=8", "--image-size", "64",
                   "--batch-size", "6", "--workers", "0", "--no-progress", "--epochs", "1", "--amp",
                   "--amp-dtype", dtype, "--out", str(tmp_path)])
    (row,) = result["history"]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    scaler = torch.load(tmp_path / "last.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (dtype == "float16")                  # a GradScaler for float16 only
    warned = "warning: --amp with bfloat16 on a CPU without bfloat16 instructions" in capsys.readouterr().out
    assert warned == (dtype == "bfloat16" and not native_bfloat16)


def test_cpu_has_bfloat16_reads_the_cpu_flags():
    """torch's detection agrees with the flags the kernel reports in /proc/cpuinfo."""
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this machine")
    assert run_module.cpu_has_bfloat16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_python_dash_m_entry_point(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sanmini.train", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("sanmini.train", run_name="__main__")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--epochs", "--batch-size", "--lr", "--image-size", "--workers", "--device",
                 "--seed", "--out", "--amp", "--resume", "--evaluate", "--weights", "--config", "--model-arg",
                 "--recompute"):
        assert f"{flag} " in text or f"{flag}," in text or f"{flag}\n" in text, flag
    assert sanmini.train.main is main


def test_a_new_run_never_destroys_an_old_one(folder, tmp_path):
    out = tmp_path / "run"
    argv = [str(folder), *TINY, "--epochs", "1", "--out", str(out)]
    main(argv)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"last.pt", "best.pt", "log.csv", "config.yaml"}
    # Refused before any work, every file as it was.
    with pytest.raises(ValueError, match=f"--out {out} holds a run .*--resume {out / 'last.pt'}.*--overwrite"):
        main([*argv, "--lr", "0.2"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # --overwrite starts over there, after moving the old run aside: nothing is deleted.
    main([*argv, "--overwrite", "--lr", "0.2"])
    moved = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert len(moved) == 1 and {p.name: p.read_bytes() for p in moved[0].iterdir()} == before
    assert "lr: 0.2" in (out / "config.yaml").read_text()
    with pytest.raises(ValueError, match="--resume .* or --overwrite .*not both"):
        parse_args([*argv, "--overwrite", "--resume", str(out / "last.pt")])


@pytest.mark.parametrize("flag", ["--lr", "--momentum", "--weight-decay", "--warmup-epochs", "--crop-min-scale"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_settings_are_refused_at_start_up(flag, value):
    with pytest.raises(ValueError, match=f"{flag} must be a finite number, got {value}"):
        parse_args(["data", flag, value])


def test_the_command_line_prints_one_line_for_a_user_error(tmp_path):
    command = [sys.executable, "-m", "sanmini.train", str(tmp_path / "nowhere"), "--epochs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sanmini.train: error: data folder {tmp_path / 'nowhere'} ")
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def test_too_small_an_image_size_is_refused_at_start_up(folder, tmp_path):
    with pytest.raises(ValueError, match="--image-size 32 is too small for --model san10_pairwise .* at least 64"):
        main([str(folder), *TINY, "--image-size", "32", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()                  # refused before any file was written


def test_resume_on_another_data_folder_says_so(folder, tmp_path, capsys):
    common = [*TINY, "--epochs", "2", "--out", str(tmp_path / "run")]
    main([str(folder), *common, "--stop-after-epoch", "1"])
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    capsys.readouterr()
    main([str(copy), *common, "--resume", str(tmp_path / "run" / "last.pt")])
    assert f"was trained on {folder}; it continues on {copy}" in capsys.readouterr().out


def test_fused_flag_reaches_every_pairwise_layer_and_trains(folder, tmp_path):
    assert not parse_args(["D"]).fused and parse_args(["D", "--fused"]).fused
    with pytest.raises(ValueError, match="--fused fuses the weight branch of pairwise attention; "
                                         "--model san10_patchwise has no pairwise attention layers"):
        parse_args(["D", "--model", "san10_patchwise", "--fused"])
    with pytest.raises(ValueError, match="give --fused or --recompute"):
        parse_args(["D", "--fused", "--recompute"])
    result = main([str(folder), *TINY, "--epochs", "1", "--fused", "--out", str(tmp_path / "fused")])
    assert {m.sam.fused for m in result["model"].modules() if hasattr(m, "sam")} == {True}
    rows = read_log(tmp_path / "fused" / "log.csv")
    assert rows and math.isfinite(float(rows[-1]["train_loss"]))


# --- issue 31: a worker's error in one line; one class refused before the model is built ---------

def test_an_unreadable_image_in_a_worker_gives_the_one_line_of_workers_0(folder, tmp_path, capsys):
    from sanmini.train.__main__ import cli
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    bad = broken / "train" / "banana" / "1.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    lines = {}
    for workers in ("0", "2"):
        argv = [str(broken), *TINY, "--epochs", "1", "--no-check-images", "--workers", workers,
                "--out", str(tmp_path / f"run{workers}")]
        capsys.readouterr()
        assert cli(argv) == 2
        lines[workers] = capsys.readouterr().err.strip().splitlines()
    assert len(lines["2"]) == 1 and lines["2"] == lines["0"]
    assert lines["2"][0].startswith(f"sanmini.train: error: cannot read the image {bad}: ")


def test_worker_message_is_the_workers_own():
    from sanmini.train.engine import batches, worker_message

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                try:
                    raise KeyError("inner")
                except KeyError as err:
                    raise ValueError(f"item {i} is broken") from err       # a chained exception
            return torch.zeros(1)

    loader = torch.utils.data.DataLoader(Broken(), batch_size=1, num_workers=1)
    with pytest.raises(ValueError) as wrapped:
        list(loader)
    assert "Original Traceback" in str(wrapped.value) and worker_message(wrapped.value) == "item 2 is broken"
    with pytest.raises(ValueError) as unwrapped:
        list(batches(loader))
    assert str(unwrapped.value) == "item 2 is broken"
    assert worker_message(ValueError("a plain error")) is None


def test_one_class_with_label_smoothing_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    one = write_class_folders(tmp_path / "one", ("only",), {"train": 2, "val": 1})
    monkeypatch.setattr(run_module, "build_model", lambda *a: pytest.fail("the model was built"))
    with pytest.raises(ValueError, match=r"--label-smoothing 0.1 spreads eps over the other classes, but "
                                         r".*train has 1 class folder: give --label-smoothing 0"):
        main([str(one), *TINY, "--epochs", "1", "--out", str(tmp_path / "run")])
