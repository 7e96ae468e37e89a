"""Seeing attention: the weights alpha of an aggregation layer, over the footprint of any pixel;
a playground of the footprint (K, stride, padding, dilation); and a chooser of figures (e.g. one
per ablation axis)."""
from .chooser import FigureChooser
from .explorer import AttentionExplorer
from .footprint import FootprintPlayground
from .page import STATIC_ENV, PageWidget
from .weights import aggregation_weights, weight_variation

__all__ = ["AttentionExplorer", "FigureChooser", "FootprintPlayground", "aggregation_weights", "weight_variation",
           "PageWidget", "STATIC_ENV"]
