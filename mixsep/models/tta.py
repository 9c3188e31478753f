"""Test-time augmentation as an evaluation wrapper around any separator network (nothing of it is saved with a
checkpoint): ``ShiftEnsemble`` averages the separations of the mix shifted by one pixel (digits have an
orientation, so shifts, not flips)."""

from __future__ import annotations

import torch
from torch import nn

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


class ShiftEnsemble(nn.Module):
    """The mean of the back-shifted separations of the mix rolled by each of ``shifts`` (dy, dx). A rolled
    image wraps its border around: the row or column that wrapped is left out of that shift's vote, so every
    pixel is the mean of the estimates that saw it in its true surroundings. A mean of pairs that each
    average to the mix still averages to it, and a mean of values inside the feasible interval stays inside."""

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
