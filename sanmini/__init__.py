"""sanmini: the self-attention networks of Zhao et al., CVPR 2020, small, tested and readable."""
from . import ops
from .ops import aggregation, subtraction, subtraction2

__version__ = "0.1.0"
__all__ = ["ops", "aggregation", "subtraction", "subtraction2", "__version__"]
