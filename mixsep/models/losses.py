"""The training losses of one source's estimate (``model.loss``; checked where it is set: ``check_recipe``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from mixsep.models.metrics import full_precision


def log_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean over images of log10(MSE) / 10 = −PSNR / 100 + const: the metric's own objective."""
    return torch.log10((pred - target).pow(2).mean(dim=(1, 2, 3)) + 1e-6).mean() / 10


PIXEL_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "psnr": log_mse}
LOSSES = (*PIXEL_LOSSES, "mse+ssim", "psnr+ssim")  # "+ssim": plus ssim_weight·(1 − SSIM)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str, ssim_weight: float = 0.1) -> torch.Tensor:
    """Loss of one source, in fp32 with autocast off."""
    with full_precision(pred.device):
        pred, target = pred.float(), target.float()
        loss = PIXEL_LOSSES[kind.removesuffix("+ssim")](pred, target)
        if kind.endswith("+ssim"):
            loss = loss + ssim_weight * (1 - structural_similarity_index_measure(pred, target, data_range=1.0))
        return loss
