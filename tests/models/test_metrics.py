"""The scores are what the README says they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio as sk_psnr

from mixsep.models.metrics import image_metrics


def _score(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    m = image_metrics()
    m.update(pred, target)
    return {k: float(v) for k, v in m.compute().items()}


def _random_images(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, 32, 32, generator=g)
    pred = target + 0.3 * torch.randn(n, 3, 32, 32, generator=g)  # partly outside [0, 1]
    return pred, target


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W) images, Gaussian window 11 / sigma 1.5, data range 1, averaged over the whole
    image with reflected borders (torchmetrics' convention; scikit-image averages valid windows only)."""
    x = np.arange(11) - 5
    w = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(w, w) / w.sum() ** 2
    blur = lambda z: convolve2d(np.pad(z, 5, mode="reflect"), w, mode="valid")  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean())


@pytest.mark.parametrize("seed", range(5))
def test_psnr_and_ssim_agree_with_independent_implementations(seed):
    pred, target = _random_images(seed)
    pred = pred.clamp(0, 1)
    ours = _score(pred, target)
    p, t = pred.double().numpy(), target.double().numpy()
    psnr = np.mean([sk_psnr(t[i], p[i], data_range=1.0) for i in range(len(p))])  # mean of per-image PSNR
    ssim = np.mean([reference_ssim(p[i, c], t[i, c]) for i in range(len(p)) for c in range(3)])
    assert ours["psnr"] == pytest.approx(psnr, abs=1e-4)
    assert ours["ssim"] == pytest.approx(ssim, abs=1e-5)


def test_psnr_is_the_mean_of_per_image_psnr_not_of_the_pooled_mse():
    target = torch.zeros(2, 3, 32, 32)
    pred = target.clone()
    pred[0] += 0.1  # 20 dB
    pred[1] += 0.01  # 40 dB
    assert _score(pred, target)["psnr"] == pytest.approx(30.0, abs=1e-4)


@pytest.mark.parametrize("seed", range(20))
def test_scores_clamp_the_prediction_which_never_lowers_a_score(seed):
    from mixsep.models.metrics import SCORES

    pred, target = _random_images(seed, n=4)
    assert _score(pred, target) == _score(pred.clamp(0, 1), target)
    for name, value in _score(pred, target).items():
        assert value >= float(SCORES[name].per_image(pred, target).mean())  # the raw prediction's


def test_a_score_that_gives_nan_makes_its_mean_nan_and_keeps_the_nan_per_image():
    from mixsep.models.metrics import MeanScore, Score, ScoreValues

    first_nan = Score("first_nan", lambda p, t: torch.where(torch.arange(len(p)) == 0, float("nan"), 0.5))
    pred, target = _random_images(0, n=3)
    mean, values = MeanScore(first_nan), ScoreValues(first_nan)
    with pytest.warns(UserWarning, match="score first_nan gives NaN for some images"):
        mean.update(pred, target)
        values.update(pred, target)
    assert torch.isnan(mean.compute())  # never the mean of the images it could score (0.5)
    assert torch.isnan(values.compute()[0]) and values.compute()[1:].tolist() == [0.5, 0.5]


def test_metrics_are_computed_in_full_precision_under_bf16_autocast():
    from mixsep.models import UNetSeparator
    from mixsep.models.module import SeparationModule

    pred, target = _random_images(0, n=8)
    mix = (target + target) / 2
    batch = (mix, target, target)
    results = []
    for autocast in (False, True):
        torch.manual_seed(0)
        module = SeparationModule(UNetSeparator(8, 1)).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            module._eval_step(batch, "test")
        scores = module.metrics["test"].compute()
        results.append({k: float(scores[k].mean()) for k in ("test/cifar_ssim", "test/cifar_psnr")})
    # the network itself runs in bf16, so only the network's own rounding may differ
    assert results[1]["test/cifar_ssim"] == pytest.approx(results[0]["test/cifar_ssim"], abs=5e-3)
    assert results[1]["test/cifar_psnr"] == pytest.approx(results[0]["test/cifar_psnr"], abs=0.2)


def test_a_score_is_found_by_its_key_whatever_its_name_and_a_taken_name_is_refused():
    import pytest

    from mixsep.errors import ConfigError
    from mixsep.models.metrics import SCORES, Score, decimals, heading, register_score, score_of

    mean_abs = Score("abs_err", lambda pred, target: (pred - target).abs().mean(dim=(1, 2, 3)), decimals=3)
    register_score(mean_abs)
    try:
        assert score_of("test/cifar_abs_err") is mean_abs and score_of("mnist_abs_err") is mean_abs
        assert (decimals("test/mnist_abs_err"), heading("abs_err")) == (3, "ABS_ERR")
        assert (decimals("test/cifar_psnr"), heading("psnr"), decimals("test/mnist_unknown")) == (2, "PSNR", 4)
        with pytest.raises(ConfigError, match="a score named 'abs_err' is already declared"):
            register_score(Score("abs_err", mean_abs.per_image))
    finally:
        SCORES.pop("abs_err")


def test_a_score_is_found_by_its_exact_name_not_by_a_suffix():
    from mixsep.models.metrics import SCORES, Score, decimals, heading, register_score, score_of

    mean_error = register_score(Score("ms_ssim", lambda p, t: (p - t).abs().mean(dim=(1, 2, 3)), decimals=3))
    try:
        assert score_of("test/mnist_ms_ssim") is mean_error and score_of("val/cifar_ms_ssim") is mean_error
        assert score_of("test/mnist_ssim").name == "ssim" and score_of("psnr").name == "psnr"
        assert heading("ms_ssim") == "MS_SSIM" and decimals("test/cifar_ms_ssim") == 3
        assert score_of("test/loss") is None and score_of("test/mnist_bogus_ssim") is None
    finally:
        del SCORES["ms_ssim"]
