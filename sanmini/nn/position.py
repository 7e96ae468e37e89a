"""Relative position encoding of the pairwise SAN block (Zhao et al., CVPR 2020, Sec. 3.1).

Each pixel gets its normalised coordinates in [-1, 1] (a 2-channel map); a trainable 1x1 linear
layer maps them, and the relation of a pair (i, j) is given p_i - p_j, computed by the subtraction
operator on that map, as the reference implementation does.
"""
from __future__ import annotations

import torch


def position_grid(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """(1, 2, H, W): channel 0 the x coordinate, channel 1 the y coordinate, each in [-1, 1]."""
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0)
