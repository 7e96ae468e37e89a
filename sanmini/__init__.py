"""sanmini: the self-attention networks of Zhao et al., CVPR 2020, small, tested and readable.

- :mod:`sanmini.ops`: the operators (aggregation, subtraction) on three backends;
- :mod:`sanmini.nn`: pairwise and patchwise self-attention with every relation of the paper, the
  SAN block;
- :mod:`sanmini.models`: SAN10/15/19 and ResNet26/38/50, FLOP counts, released checkpoints;
- :mod:`sanmini.memory`: the peak memory of a call (CPU and GPU), as the benchmarks measure it;
- :mod:`sanmini.traffic`: the bytes a call's operators read and write, an estimate of its memory
  traffic;
- :mod:`sanmini.timing`: wall-clock times of calls that take turns, the fastest of several runs;
- :mod:`sanmini.cpu_settings`: oneDNN on or off for a block, bfloat16 instructions;
- :mod:`sanmini.reference`: the reference implementation's figures, measured once on one H200;
- :mod:`sanmini.robustness`: FGSM and PGD attacks (L-infinity, untargeted) and their success rate;
- :mod:`sanmini.data`, :mod:`sanmini.train` (imported on demand: they need torchvision): data
  folders and small datasets, and training (``python -m sanmini.train``).
"""
from . import cpu_settings, memory, models, nn, ops, reference, robustness, timing, traffic, viz
from .models import count_flops, create, load_pretrained
from .ops import aggregation, subtraction, subtraction2

__version__ = "0.1.0"
__all__ = ["ops", "nn", "models", "viz", "memory", "traffic", "timing", "cpu_settings", "reference", "robustness", "aggregation",
           "subtraction", "subtraction2", "create", "count_flops", "load_pretrained", "__version__"]
