"""Loading released checkpoints of the reference SAN implementation (Zhao et al., CVPR 2020), and
checkpoints written by ``sanmini.train``, into ``sanmini.models``."""
from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from .registry import create

PREFIX = "module."   # added by DataParallel / DistributedDataParallel


def read_checkpoint(path, map_location="cpu"):
    """What ``torch.save`` wrote to ``path``, read with ``weights_only=True``. A missing file
    raises FileNotFoundError, anything else that is not such a file a ValueError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty: expected a checkpoint written by torch.save")
    with open(path, "rb") as f:
        start = f.read(8)
    if not (start.startswith(b"PK\x03\x04") or start.startswith(b"\x80")):   # a zip, or a legacy pickle
        raise ValueError(f"{path} is not a checkpoint written by torch.save (a zip archive or a "
                         f"pickle): it starts with {start!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:       # a pickle of more than tensors and plain types
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler" in line or
                       "Unsupported global" in line), str(err).splitlines()[0] if str(err) else "")
        raise ValueError(f"{path} is not a readable torch checkpoint: it holds objects other than "
                         f"tensors and plain types, which are never loaded ({reason})") from err
    except Exception as err:                     # a text file, a truncated or foreign file, ...
        raise ValueError(f"{path} is not a checkpoint written by torch.save "
                         f"({type(err).__name__}: {err or 'no detail'})") from err


def _state_dict_of(checkpoint, path) -> dict:
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        found = (f"a dict with the keys {', '.join(map(repr, list(checkpoint)[:5]))}"
                 if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}")
        raise ValueError(f"{path} holds no state dict: expected a dict of tensors, or a dict with "
                         f"one under 'state_dict', got {found}")
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in checkpoint.items()}


def check_state_dict(model: nn.Module, state: dict, source: str = "the checkpoint") -> None:
    """Raise a ValueError naming the missing and unexpected keys and the first shape mismatch,
    if ``state`` does not fit ``model`` key for key and shape for shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatch = next(((k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                     if k in state and state[k].shape != v.shape), None)
    if not (missing or unexpected or mismatch):
        return

    def some(keys):
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({some(unexpected)})")
    if mismatch:
        problems.append(f"first shape mismatch: {mismatch[0]} is {mismatch[1]} in the checkpoint "
                        f"but {mismatch[2]} in the model")
    raise ValueError(f"{source} does not fit the model {type(model).__name__}: " + "; ".join(problems))


def load_pretrained(model_or_name, path, map_location="cpu") -> nn.Module:
    """Load a checkpoint file into a model, all or nothing.

    Args:
        model_or_name: a model, or a name for :func:`sanmini.models.create`.
        path: a file saved with ``torch.save``: a bare state dict or a dict with ``state_dict``
            (the released checkpoints and ``sanmini.train``'s ``last.pt``/``best.pt``); keys may
            carry the ``module.`` prefix of DataParallel. Read with ``weights_only=True``.

    Returns:
        The model with the weights loaded. A file that does not fit raises a ValueError naming
        the missing and unexpected keys and the first shape mismatch, and the model is unchanged.
    """
    model = create(model_or_name) if isinstance(model_or_name, str) else model_or_name
    state = _state_dict_of(read_checkpoint(path, map_location), path)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model
