"""SAN operators: aggregation and subtraction over a K x K footprint, on three backends.

``aggregation``, ``subtraction`` and ``subtraction2`` are the operator set of the SAN reference
implementation (Zhao et al., CVPR 2020), each with ``backend=`` ``"auto"``, ``"torch"`` (the plain
torch specification), ``"cpu"`` (Numba) or ``"cuda"`` (Numba CUDA). See :mod:`.functional`.
``fused_pairwise`` is pairwise attention's whole weight branch and aggregation in one operator
(:mod:`.fused`). ``max_pool2x2`` is the SAN's 2 x 2 max-pool between stages, with a CPU kernel
(:mod:`.max_pool`).
"""
from .functional import aggregation, available_backends, resolve_backend, subtraction, subtraction2
from .fused import FUSED_RELATIONS, fused_pairwise
from .geometry import Window, output_size
from .max_pool import max_pool2x2

__all__ = ["aggregation", "subtraction", "subtraction2", "available_backends", "resolve_backend",
           "Window", "output_size",
           "fused_pairwise", "FUSED_RELATIONS", "max_pool2x2"]
