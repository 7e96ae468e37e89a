"""The training configuration: one dataclass, its command line, and YAML/TOML config files.

Every field of :class:`TrainConfig` is a flag (``batch_size`` is ``--batch-size``); a config file
(``--config FILE.yaml`` or ``.toml``) may set any of them by field name, and flags on the command
line win over the file. The defaults are the recipe of Zhao et al., CVPR 2020 (the reference
implementation's ImageNet configuration): SGD with momentum 0.9, learning rate 0.1 per 256 images,
cosine schedule stepped per epoch over 100 epochs, no warm-up, weight decay 1e-4 on every
parameter, label smoothing 0.1 spread as eps/(K-1) over the other classes, 224-pixel random resized
crops and flips, resize 256 and centre crop 224 for evaluation, 256 images per step in total
(32 per GPU on 8 GPUs).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..models import MODELS


@dataclass
class TrainConfig:
    data: str | None = field(default=None, metadata=dict(metavar="DATA",
        help="ImageNet-style folder with train/CLASS/* and val/CLASS/*"))
    model: str = field(default="san10_pairwise", metadata=dict(
        choices=MODELS, metavar="NAME", help=f"a sanmini.models name: {', '.join(MODELS)}"))
    model_args: dict = field(default_factory=dict, metadata=dict(
        help="KEY=VALUE override for sanmini.models.create, repeatable: --model-arg width=16 "
             "--model-arg kernel_size=3 --model-arg backend=torch"))
    num_classes: int | None = field(default=None, metadata=dict(
        help="number of classes (default: the number of class folders; must match it)"))
    epochs: int = field(default=100, metadata=dict(help="epochs in the run; the cosine schedule spans them"))
    batch_size: int = field(default=256, metadata=dict(
        help="images per step over all processes; each of G processes takes batch_size / G"))
    lr: float = field(default=0.1, metadata=dict(help="learning rate per 256 images (see --lr-scaling)"))
    lr_scaling: str = field(default="linear", metadata=dict(
        choices=("linear", "none"), help="linear: the step size is lr * batch_size / 256; none: lr"))
    momentum: float = field(default=0.9, metadata=dict(help="SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=dict(help="SGD weight decay"))
    decay_norm_and_bias: bool = field(default=True, metadata=dict(
        help="weight decay on batch-norm parameters and biases too, as the reference does "
             "(--no-decay-norm-and-bias exempts them)"))
    label_smoothing: float = field(default=0.1, metadata=dict(help="label smoothing eps, 0 for none"))
    smoothing_style: str = field(default="reference", metadata=dict(
        choices=("reference", "uniform"),
        help="reference: 1 - eps on the target, eps/(K-1) on each other class; "
             "uniform: eps/K on every class (torch's CrossEntropyLoss)"))
    warmup_epochs: float = field(default=0.0, metadata=dict(
        help="linear warm-up over this many epochs, stepped per iteration (0: none, the reference)"))
    schedule_per_step: bool = field(default=False, metadata=dict(
        help="step the cosine schedule every iteration instead of every epoch (the reference)"))
    image_size: int = field(default=224, metadata=dict(help="training crop and evaluation crop side"))
    crop_min_scale: float = field(default=0.08, metadata=dict(
        help="smallest area fraction of a training crop (RandomResizedCrop's scale)"))
    flip: bool = field(default=True, metadata=dict(help="random horizontal flips in training"))
    val_resize: int | None = field(default=None, metadata=dict(
        help="short side before the evaluation centre crop (default image_size * 256 / 224)"))
    val_batch_size: int | None = field(default=None, metadata=dict(
        help="evaluation images per step over all processes (default: --batch-size)"))
    drop_last: bool = field(default=False, metadata=dict(
        help="drop each epoch's last incomplete training batch (the reference keeps it)"))
    check_images: bool = field(default=True, metadata=dict(
        help="read every train and val image's header before the first epoch, so that a file that "
             "is no image stops the run at once, naming it (about 0.2 ms per image on a warm local "
             "disk, shared among the processes; --no-check-images skips it)"))
    workers: int = field(default=4, metadata=dict(help="data-loading processes per training process"))
    threads: int | None = field(default=None, metadata=dict(
        help="torch threads per process (torch.set_num_threads); default: torch's choice, "
             "which torchrun makes 1 through OMP_NUM_THREADS"))
    device: str = field(default="auto", metadata=dict(
        choices=("auto", "cpu", "cuda"), help="auto: cuda if available, else cpu"))
    amp: bool = field(default=False, metadata=dict(help="mixed precision through torch.autocast"))
    amp_dtype: str = field(default="bfloat16", metadata=dict(
        choices=("bfloat16", "float16"), help="autocast dtype; float16 adds a GradScaler"))
    channels_last: str = field(default="auto", metadata=dict(
        choices=("auto", "on", "off"),
        help="channels_last memory format; auto: on for ResNets on CUDA with --amp (tensor-core "
             "convolutions), off otherwise (the SAN operators read contiguous NCHW)"))
    compile: bool = field(default=False, metadata=dict(
        help="train the model through torch.compile (the SAN operators are custom operators, so "
             "a SAN compiles to one graph with no breaks); checkpoints hold the plain weights"))
    compile_backend: str = field(default="inductor", metadata=dict(
        help="torch.compile backend for --compile (aot_eager traces the same graph without "
             "generating code: quick to compile, for checking)"))
    recompute: bool = field(default=False, metadata=dict(
        help="recompute each SAN attention layer's weight branch (relation, position encoding, "
             "gamma, softmax) in the backward pass instead of keeping its (N, C, K*K, H*W) "
             "tensors: less memory for one more forward of the branch, the same weights and "
             "batch-norm statistics (SAN models only)"))
    fused: bool = field(default=False, metadata=dict(
        help="compute each pairwise attention layer's weight branch and aggregation as one fused "
             "operator that never writes its (N, C, K*K, H*W) tensors (sanmini.ops.fused_pairwise: "
             "subtraction and summation relations, Numba kernels on a CPU, Numba CUDA ones on a "
             "GPU; pairwise SAN models only)"))
    seed: int = field(default=0, metadata=dict(help="seed of model initialisation, shuffling and augmentation"))
    out: str | None = field(default=None, metadata=dict(metavar="DIR",
        help="output folder for last.pt, best.pt, log.csv, config.yaml (default runs/MODEL)"))
    overwrite: bool = field(default=False, metadata=dict(
        help="start a new run in an --out folder that holds one: its files are first moved to "
             "OUT/replaced-DATE-TIME/ (nothing is deleted); without it such a folder is refused"))
    resume: str | None = field(default=None, metadata=dict(metavar="PATH",
        help="continue a run from its checkpoint (e.g. OUT/last.pt), exactly where it stopped"))
    evaluate: bool = field(default=False, metadata=dict(
        help="only evaluate --weights on DATA/val (top-1, top-5), no training"))
    weights: str | None = field(default=None, metadata=dict(metavar="PATH",
        help="model weights to evaluate (with --evaluate) or to start training from; any file "
             "sanmini.models.load_pretrained reads, e.g. a released checkpoint"))
    stop_after_epoch: int | None = field(default=None, metadata=dict(
        help="debugging: stop after this epoch as if killed, the schedule unchanged; "
             "--resume OUT/last.pt continues"))
    progress: bool = field(default=True, metadata=dict(help="tqdm progress bars (rank 0)"))

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.model

    def to_dict(self) -> dict:
        """Plain types only (lists for tuples), for YAML and for ``torch.load(weights_only=True)``."""
        def plain(value):
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value
        return plain(dataclasses.asdict(self))


# Fields that change what a run computes: a resumed run must have the same ones.
RECIPE_FIELDS = ("model", "model_args", "num_classes", "epochs", "batch_size", "lr", "lr_scaling",
                 "momentum", "weight_decay", "decay_norm_and_bias", "label_smoothing",
                 "smoothing_style", "warmup_epochs", "schedule_per_step", "image_size", "crop_min_scale",
                 "flip", "drop_last", "seed")

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_value(text: str):
    """A command-line or model-arg value: ``16`` -> 16, ``true`` -> True, ``3,7,7`` or
    ``(3, 7, 7)`` or ``[3, 7, 7]`` -> (3, 7, 7), ``none`` -> None, anything else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if "," in text:
            return tuple(parse_value(part) for part in text.split(","))
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_model_args(items) -> dict:
    """``["width=16", "kernel_size=3"]`` -> ``{"width": 16, "kernel_size": 3}``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-arg expects KEY=VALUE (e.g. width=16), got {item!r}")
        result[key.strip()] = parse_value(value)
    return result


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value, source: str):
    """A value from a config file, checked against the field's type."""
    f = FIELDS[name]
    kind = f.type.split(" | ")[0]
    if value is None:
        if "None" not in f.type:
            raise ValueError(f"{source}: {name} cannot be empty")
        return None
    if name == "model_args":
        if isinstance(value, list):
            return parse_model_args(value)
        if not isinstance(value, dict):
            raise ValueError(f"{source}: model_args must be a mapping like {{width: 16}}, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[kind]
        raise ValueError(f"{source}: {name} must be {wanted}, got {value!r}")
    value = float(value) if kind == "float" else value
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{source}: {name} must be one of {list(choices)}, got {value!r}")
    return value


def _toml():
    try:
        import tomllib              # Python 3.11+
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError("--config FILE.toml needs Python 3.11+ or the tomli package; "
                             "use a .yaml file instead") from None
    return tomllib


def load_config_file(path) -> dict:
    """The fields set by a ``.yaml``/``.yml``/``.toml`` file, checked (unknown keys are errors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"--config {path}: expected a .yaml, .yml or .toml file")
    text = path.read_text()
    try:
        values = _toml().loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (ValueError, yaml.YAMLError) as err:   # TOMLDecodeError is a ValueError
        raise ValueError(f"--config {path} is not valid {path.suffix[1:].upper()}: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of field: value, got {type(values).__name__}")
    result = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise ValueError(f"--config {path}: unknown key {key!r}; known keys: {', '.join(FIELDS)}")
        result[name] = _coerce(name, value, f"--config {path}")
    return result


class _Unset:
    def __repr__(self):
        return "<unset>"


_UNSET = _Unset()   # marks flags not given on the command line, so a config file can set them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sanmini.train",
        description="Train (or evaluate) a sanmini.models network on an ImageNet-style folder, "
                    "on one device or, under torchrun, on many. Defaults: the recipe of Zhao et "
                    "al., CVPR 2020.")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of its one-line message")
    parser.add_argument("--config", metavar="FILE", help="a YAML or TOML file setting any of the options below "
                                         "by name (e.g. batch_size: 64); flags override it")
    for name, f in FIELDS.items():
        kind = f.type.split(" | ")[0]
        help_text = f.metadata["help"]
        if name == "data":
            parser.add_argument("data", nargs="?", default=_UNSET, metavar="DATA", help=help_text)
        elif name == "model_args":
            parser.add_argument("--model-arg", dest="model_args", action="append", default=[],
                                metavar="KEY=VALUE", help=help_text)
        elif kind == "bool":
            parser.add_argument(_flag(name), action=argparse.BooleanOptionalAction,
                                default=f.default, help=help_text)
        else:
            parser.add_argument(_flag(name), type={"int": int, "float": float, "str": str}[kind],
                                choices=f.metadata.get("choices"), metavar=f.metadata.get("metavar"),
                                default=f.default,
                                help=help_text + (" (default: %(default)s)" if f.default is not None else ""))
    return parser


def parse_args(argv=None) -> TrainConfig:
    """Command line (and ``--config`` file) -> a checked :class:`TrainConfig`.

    Precedence: a flag given on the command line, then the config file, then the default.
    """
    unset = argparse.Namespace(**{name: [] if name == "model_args" else _UNSET for name in FIELDS})
    given_args = build_parser().parse_args(argv, namespace=unset)   # unset: not on the command line
    from_file = load_config_file(given_args.config) if given_args.config else {}
    values = {}
    for name in FIELDS:
        given = getattr(given_args, name)
        if name == "model_args":
            values[name] = {**from_file.get(name, {}), **parse_model_args(given)}
        elif given is not _UNSET:
            values[name] = given
        elif name in from_file:
            values[name] = from_file[name]
    config = TrainConfig(**values)
    check_config(config)
    return config


def check_config(config: TrainConfig) -> None:
    """Raise a ValueError naming the flag for values no run can use."""
    if config.data is None:
        raise ValueError("no data folder: give DATA (the folder with train/ and val/) as the "
                         "first argument, or data: in the --config file")
    positive = ("epochs", "batch_size", "image_size", "num_classes", "val_batch_size", "val_resize",
                "threads")
    for name in positive:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{_flag(name)} must be at least 1, got {value}")
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "crop_min_scale", "label_smoothing"):
        if not math.isfinite(getattr(config, name)):
            raise ValueError(f"{_flag(name)} must be a finite number, got {getattr(config, name)}")
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "workers"):
        if getattr(config, name) < 0:
            raise ValueError(f"{_flag(name)} must not be negative, got {getattr(config, name)}")
    if config.lr == 0:
        raise ValueError("--lr must be positive, got 0")
    if not 0 < config.crop_min_scale <= 1:
        raise ValueError(f"--crop-min-scale must be in (0, 1], got {config.crop_min_scale}")
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.warmup_epochs >= config.epochs:
        raise ValueError(f"--warmup-epochs ({config.warmup_epochs}) must be less than --epochs ({config.epochs})")
    if config.stop_after_epoch is not None and not 1 <= config.stop_after_epoch <= config.epochs:
        raise ValueError(f"--stop-after-epoch must be in 1..{config.epochs} (--epochs), "
                         f"got {config.stop_after_epoch}")
    if config.evaluate and not config.weights:
        raise ValueError("--evaluate needs --weights PATH: the checkpoint to evaluate")
    if config.recompute and config.model.startswith("resnet"):
        raise ValueError(f"--recompute recomputes the attention weights of a SAN; --model "
                         f"{config.model} has no attention layers")
    if config.fused and not config.model.endswith("_pairwise"):
        raise ValueError(f"--fused fuses the weight branch of pairwise attention; --model {config.model} "
                         f"has no pairwise attention layers")
    if config.fused and config.recompute:
        raise ValueError("--fused keeps nothing of the weight branch to recompute: give --fused or --recompute")
    if config.resume and config.overwrite:
        raise ValueError("give --resume (continue the run in --out) or --overwrite (start a new one "
                         "there), not both")
    if config.resume and config.weights:
        raise ValueError("give --resume (continue a run) or --weights (start from weights), not both")
