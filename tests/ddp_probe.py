"""Run by ``torchrun`` from tests/test_train.py: one process of a distributed sanmini.train run,
which reports what it did to PROBE_DIR/rank{RANK}.pt:

- ``initial`` and ``final``: the model's parameters when built and after training;
- ``writes``: every file this process opened for writing, renamed or made under the run's
  --out folder, seen through Python's audit hooks, so nothing in sanmini can hide a write.

Usage: torchrun --nproc_per_node=2 tests/ddp_probe.py PROBE_DIR [sanmini.train arguments]
"""
import os
import sys
from pathlib import Path

import torch

import sanmini.train.runner as run_module
from sanmini.train import main, parse_args

probe_dir, argv = Path(sys.argv[1]), sys.argv[2:]
out = parse_args(argv).out_dir.resolve()
writes = []


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                  (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    elif event == "os.rename":                   # os.rename and os.replace
        path, writing = args[1], True
    elif event == "os.mkdir":
        path, writing = args[0], True
    else:
        return
    if writing and isinstance(path, (str, os.PathLike)):
        if Path(os.path.abspath(path)).is_relative_to(out):
            writes.append(str(path))


sys.addaudithook(audit)
initial = {}
build_model = run_module.build_model


def recording_build_model(config, num_classes):
    model = build_model(config, num_classes)
    initial.update({k: v.detach().clone() for k, v in model.named_parameters()})
    return model


run_module.build_model = recording_build_model
result = main(argv)
final = {k: v.detach().clone() for k, v in result["model"].named_parameters()}
torch.save({"initial": initial, "final": final, "writes": list(writes)},
           probe_dir / f"rank{os.environ['RANK']}.pt")
