"""Self-attention layers of Zhao et al., CVPR 2020: pairwise and patchwise attention, the SAN block."""
from .block import SANBlock
from .convolution import FixedAggregation
from .gamma import gamma
from .operators import Aggregation, Subtraction, Subtraction2, Unfold, same_padding, set_backend
from .pairwise import RELATIONS as PAIRWISE_RELATIONS
from .pairwise import PairwiseAttention
from .patchwise import RELATIONS as PATCHWISE_RELATIONS
from .patchwise import PatchwiseAttention
from .pointwise import Pointwise
from .pool import MaxPool2x2
from .position import position_grid

__all__ = ["PairwiseAttention", "PatchwiseAttention", "SANBlock", "FixedAggregation", "PAIRWISE_RELATIONS",
           "PATCHWISE_RELATIONS", "Aggregation", "Subtraction", "Subtraction2", "Unfold", "gamma",
           "Pointwise", "MaxPool2x2", "position_grid", "same_padding", "set_backend"]
