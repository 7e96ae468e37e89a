"""Loading released checkpoints of the reference SAN implementation (Zhao et al., CVPR 2020), and
checkpoints written by ``sanmini.train``, into ``sanmini.models``."""
from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from .registry import create

PREFIX = "module."   # added by DataParallel / DistributedDataParallel


def _state_dict_of(checkpoint, path) -> dict:
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} holds no state dict: expected a dict of tensors, or a dict with "
                         f"one under 'state_dict', got {type(checkpoint).__name__}")
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
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable torch checkpoint: {err}") from err
    state = _state_dict_of(checkpoint, path)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model
