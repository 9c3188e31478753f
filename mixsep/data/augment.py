"""The 8 flips and rotations of a square image (the dihedral group D4), and the 6 orders of the RGB channels:
training augmentations and test-time self-ensembles. The mixing of the two sources commutes with all of them;
a channel order leaves the gray digit as it is and reorders only the colour source."""

from __future__ import annotations

import itertools

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


CHANNEL_ORDERS = tuple(itertools.permutations(range(3)))  # the 6 orders of R, G, B


def reorder_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 3, H, W) images with their channels in order k of the 6."""
    return x[:, list(CHANNEL_ORDERS[k])]


def undo_reorder_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    order = CHANNEL_ORDERS[k]
    return x[:, [order.index(c) for c in range(3)]]


def permute_channels(images: torch.Tensor) -> torch.Tensor:
    """Each image's R, G, B channels in one of the 6 orders, at random (six colour images for one)."""
    orders = torch.tensor(CHANNEL_ORDERS, device=images.device)
    order = orders[torch.randint(len(orders), (len(images),), device=images.device)]  # (B, 3)
    return torch.gather(images, 1, order[:, :, None, None].expand(-1, -1, *images.shape[2:]))


def mirror_half(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2 (a mirrored photograph is still a natural one)."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
