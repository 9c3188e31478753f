"""The training losses of one source's estimate (``model.loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from mixsep.errors import ConfigError
from mixsep.models.metrics import full_precision

LOSSES = ("mse", "l1", "psnr", "mse+ssim", "psnr+ssim")


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str, ssim_weight: float = 0.1) -> torch.Tensor:
    """Loss of one source. ``psnr`` = mean over images of log10(MSE): the metric's own objective."""
    with full_precision(pred.device):
        return _reconstruction_loss(pred.float(), target.float(), kind, ssim_weight)


def _reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str, ssim_weight: float) -> torch.Tensor:
    if kind.startswith("mse"):
        loss = F.mse_loss(pred, target)
    elif kind == "l1":
        loss = F.l1_loss(pred, target)
    elif kind.startswith("psnr"):
        per_image = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = torch.log10(per_image + 1e-6).mean() / 10  # = -PSNR / 100 + const
    else:
        raise ConfigError(f"model.loss={kind!r} is not one of {LOSSES}")
    if kind.endswith("+ssim"):
        loss = loss + ssim_weight * (1 - structural_similarity_index_measure(pred, target, data_range=1.0))
    return loss
