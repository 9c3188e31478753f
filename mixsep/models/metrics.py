"""The scores of a separator, as logged and written to metrics.json: ``{stage}/{source}_{psnr,ssim}``, with
SSIM and the mean of per-image PSNR on data range 1. The names are defined here only; everything else imports
them."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
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


def per_image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of each image, data range 1 (torchmetrics' own, unreduced): the values whose means are the
    logged scores."""
    return {
        "psnr": peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)),
        "ssim": structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none"),
    }


def full_precision(device: torch.device):
    """Autocast off: SSIM's variance terms (E[x²] − E[x]²) are wrong in bf16/fp16."""
    return torch.autocast(device_type=device.type, enabled=False)
