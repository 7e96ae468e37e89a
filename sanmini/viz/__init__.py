"""Seeing attention: the weights alpha of an aggregation layer, over the footprint of any pixel."""
from .explorer import STATIC_ENV, AttentionExplorer
from .weights import aggregation_weights, weight_variation

__all__ = ["AttentionExplorer", "aggregation_weights", "weight_variation", "STATIC_ENV"]
