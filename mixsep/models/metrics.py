"""The scores of a separator, declared once each (``register_score``): every log key, metrics.json, scores.npz,
report and model card follows these declarations; a score of one's own is one ``register_score`` call in a module
named by ``extensions`` (or ``MIXSEP_EXTENSIONS``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchmetrics import CatMetric, MetricCollection
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from mixsep.errors import ConfigError

# the two sources of a mean image as the keys users read name them (test/mnist_psnr, ...): the gray source,
# then the colour one, whichever data sets fill them
SOURCES = ("mnist", "cifar")
PROBE_IMAGES = 4


@dataclass(frozen=True)
class Score:
    """A per-image score: ``per_image(pred, target)`` of (B, 3, 32, 32) images in [0, 1] gives (B,) values; the
    logged score is their mean over the pairs."""

    name: str
    per_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    decimals: int = 4
    higher_is_better: bool = True
    label: str = ""  # as a table heads it (PSNR); the upper-case name when empty
    unit: str = ""  # as a model card gives it (dB)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ConfigError(f"a score's name is a lower-case identifier (test/mnist_<name>): {self.name!r}")

    @property
    def heading(self) -> str:
        return self.label or self.name.upper()


SCORES: dict[str, Score] = {}


def register_score(score: Score) -> Score:
    """Declare a score: every run from now on logs it per source, and every report shows it. A name already taken
    is refused, and so is a function that does not give one finite number per image of a probe batch."""
    if score.name in SCORES and SCORES[score.name] is not score:
        raise ConfigError(f"a score named {score.name!r} is already declared: choose another name")
    pred, target = torch.rand(2, PROBE_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        problem = _not_per_image(score.per_image(pred, target))
    except Exception as err:
        raise ConfigError(
            f"score {score.name} fails on a probe batch of {PROBE_IMAGES} images ({type(err).__name__}: {err})"
        ) from err
    if problem:
        raise ConfigError(
            f"score {score.name} gives {problem} for a probe batch of {PROBE_IMAGES} images "
            f"(({PROBE_IMAGES}, 3, 32, 32) predictions and targets): a score gives one finite number per image, "
            "a float tensor of shape (B,), e.g. (pred - target).abs().mean(dim=(1, 2, 3))"
        )
    SCORES[score.name] = score
    return score


def _not_per_image(values) -> str | None:
    """What is wrong with a score's result for the probe batch, in words; None: one finite float per image."""
    if not isinstance(values, torch.Tensor):
        return f"a {type(values).__name__} ({str(values)[:40]})"
    shape = tuple(values.shape)
    if shape == ():
        return "one number for the whole batch (a tensor of shape ())"
    if shape != (PROBE_IMAGES,):
        return f"a tensor of shape {shape}" + (" (a per-pixel result)" if shape[-2:] == (32, 32) else "")
    if not values.is_floating_point():
        return f"{values.dtype} values, not floats"
    if not torch.isfinite(values).all():
        return f"values that are not finite ({', '.join(str(float(v)) for v in values)})"
    return None


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))


def _ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")


PSNR = register_score(Score("psnr", _psnr, decimals=2, label="PSNR", unit="dB"))  # the mean of per-image PSNR, in dB
SSIM = register_score(Score("ssim", _ssim, decimals=4, label="SSIM"))
RANK_SCORE = "psnr"  # the leaderboard ranks by the mean of the two sources' PSNR; sweeps pick by val/psnr
TEST_KEYS = tuple(f"test/{source}_{score}" for source in SOURCES for score in ("psnr", "ssim"))  # the built-ins


def score_of(key: str) -> Score | None:
    """The declared score behind a key (``test/mnist_psnr``, ``mnist_ssim``, ``psnr``), by its exact name."""
    name = key.rpartition("/")[2]
    source = next((s for s in SOURCES if name.startswith(f"{s}_")), None)
    return SCORES.get(name.removeprefix(f"{source}_") if source else name)


def heading(name: str) -> str:
    """How a table heads a score: its declared label, else its name in capitals."""
    score = score_of(name)
    return score.heading if score else name.upper()


def decimals(key: str) -> int:
    """How many decimals a table shows for ``key``: its score's declaration (4 for a score not declared here)."""
    score = score_of(key)
    return score.decimals if score else 4


def per_image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every declared score of each image: the values whose means are the logged scores."""
    return {name: say_if_failed(score, score.per_image(pred, target), pred) for name, score in SCORES.items()}


def say_if_failed(score: Score, values: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``values``, after a warning (once per process and cause) where the score gave NaN: its logged mean is then
    NaN, which reports show as failed, not as "not scored"."""
    if bool(torch.isnan(values).any()):
        whose = "the model's estimates are NaN" if bool(torch.isnan(pred).any()) else "a failure of its function"
        warnings.warn(
            f"score {score.name} gives NaN for some images ({whose}): its mean is NaN, shown as failed in reports",
            stacklevel=2,
        )
    return values


class ScoreValues(CatMetric):
    """A declared score of each image seen, in the order seen (under DDP: gathered from every process). The
    prediction is clamped to [0, 1] and scored in fp32 with autocast off; a NaN is kept and said."""

    def __init__(self, score: Score) -> None:
        super().__init__(nan_strategy="disable")
        self.score = score

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        with full_precision(pred.device):
            values = self.score.per_image(pred.float().clamp(0, 1), target.float())
        super().update(say_if_failed(self.score, values, pred))


class MeanScore(ScoreValues):
    """A declared score's mean over the images seen (a NaN makes it NaN)."""

    def compute(self) -> torch.Tensor:
        return super().compute().mean()


def image_metrics() -> MetricCollection:
    """Every declared score's mean over the images seen."""
    return MetricCollection({name: MeanScore(score) for name, score in SCORES.items()}, compute_groups=False)


def full_precision(device: torch.device):
    """Autocast off: SSIM's variance terms (E[x²] − E[x]²) are wrong in bf16/fp16."""
    return torch.autocast(device_type=device.type, enabled=False)
