"""The scores of a separator, as logged and written to metrics.json: ``{stage}/{source}_{psnr,ssim}``, with
SSIM and the mean of per-image PSNR on data range 1. The names are defined here only; everything else imports
them."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

# The scores of a separator, as logged and written to metrics.json: {stage}/{source}_{score}. Defined here
# only; the report, the sweep report and the tests import them.
SOURCES = ("mnist", "cifar")
SCORES = ("psnr", "ssim")
TEST_KEYS = tuple(f"test/{source}_{score}" for source in SOURCES for score in SCORES)


def image_metrics() -> MetricCollection:
    """SSIM and mean per-image PSNR, data range 1, as everywhere in mixsep."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    )


def per_image_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR of each image, data range 1: the values whose mean is the logged PSNR."""
    return -10 * torch.log10((pred - target).pow(2).mean(dim=(1, 2, 3)))


def per_image_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of each image, as the logged SSIM computes it (whose mean it is)."""
    return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")


def metric_prefix(stage: str, name: str) -> str:
    """Logged names of a separator's scores: ``{stage}/{source}_{psnr,ssim}`` (one-image systems: one_image.py)."""
    return f"{stage}/{name}_"


def full_precision(device: torch.device):
    """Autocast off: SSIM's variance terms (E[x²] − E[x]²) are wrong in bf16/fp16."""
    return torch.autocast(device_type=device.type, enabled=False)
