"""The 8 flips and rotations of a square image (the dihedral group D4): training augmentation and the
test-time self-ensemble. The mixing of the two sources commutes with all of them."""

from __future__ import annotations

import torch

TRANSFORMS = 8


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform k of 0..7 of (…, H, W) images: k >= 4 mirrors, then k % 4 quarter turns."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x
