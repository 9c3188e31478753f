"""Test-time self-ensembles: evaluation wrappers around any separator network, chosen by whoever evaluates, never
by ``forward``. Each averages the back-transformed separations, so a wrapped separator is still a separator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mixsep.data.augment import (
    CHANNEL_ORDERS,
    TRANSFORMS,
    dihedral,
    reorder_channels,
    undo_dihedral,
    undo_reorder_channels,
)

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


class ShiftEnsemble(nn.Module):
    """The mean of the back-shifted separations of the mix rolled by each (dy, dx) of ``shifts`` (digits have an
    orientation: shifts, not flips); the row or column that wrapped around is left out of that shift's vote."""

    def __init__(self, net: nn.Module, shifts: tuple[tuple[int, int], ...] = SHIFTS) -> None:
        super().__init__()
        self.net, self.shifts = net, tuple(tuple(s) for s in shifts)

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total: list[torch.Tensor] | None = None
        weight = torch.zeros_like(mix[:, :1], dtype=torch.float32)
        for dy, dx in self.shifts:
            outs = self.net(torch.roll(mix, (dy, dx), dims=(2, 3)))
            back = [torch.roll(o.float(), (-dy, -dx), dims=(2, 3)) for o in outs]
            valid = torch.ones_like(weight)
            if dy:  # after rolling back, the pixels whose shifted copy had wrapped around
                valid[:, :, -1 if dy > 0 else 0, :] = 0
            if dx:
                valid[:, :, :, -1 if dx > 0 else 0] = 0
            weight = weight + valid
            total = [o * valid for o in back] if total is None else [t + o * valid for t, o in zip(total, back)]
        return tuple(t / weight for t in total)


class _Ensemble(nn.Module):
    """The mean of ``undo(net(do(x)))`` over the transforms."""

    transforms: int
    do: Callable
    undo: Callable

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [tuple(self.undo(o, k) for o in self.net(self.do(mix, k))) for k in range(self.transforms)]
        return tuple(torch.stack(group).mean(0) for group in zip(*outs))


class DihedralEnsemble(_Ensemble):
    transforms, do, undo = TRANSFORMS, staticmethod(dihedral), staticmethod(undo_dihedral)


class ColorEnsemble(_Ensemble):
    transforms = len(CHANNEL_ORDERS)
    do, undo = staticmethod(reorder_channels), staticmethod(undo_reorder_channels)


def test_time_ensemble(net: nn.Module, dihedral: bool = False, color: bool = False, shift: bool = False):
    """``net`` wrapped in the chosen self-ensembles (shifts innermost) and the sentence that says which and how many
    network passes an image then costs (``None``: the plain network)."""
    names, passes = [], 1
    for wanted, wrapper, name, n in (
        (shift, ShiftEnsemble, "one-pixel shifts", len(SHIFTS)),
        (dihedral, DihedralEnsemble, "flips/rotations", TRANSFORMS),
        (color, ColorEnsemble, "RGB orders", len(CHANNEL_ORDERS)),
    ):
        if wanted:
            net, passes = wrapper(net), passes * n
            names.append(f"the {n} {name}")
    if passes == 1:
        return net, None
    return net, f"test-time self-ensemble over {' x '.join(names)}: {passes} network passes per image"
