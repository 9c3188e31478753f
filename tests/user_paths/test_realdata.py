"""Real MNIST + CIFAR-10 (skipped unless MIXSEP_DATA_ROOT holds them; CI sets it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mixsep import load_separator
from mixsep.data.datamodule import MixDataModule
from mixsep.models.metrics import image_metrics
from mixsep.pretrained import DEFAULT_MODEL
from mixsep.report.leaderboard import baseline_rows
from mixsep.run import train
from tests.helpers import REAL_ROOT, requires_real_data

SHIPPED = Path(__file__).resolve().parents[2] / "results" / "best_cpu"


def test_shipped_model_loads_and_separates_on_a_fresh_install():
    sep = load_separator(SHIPPED / "model.ckpt")
    mix = torch.rand(3, 3, 32, 32)
    gray_hat, color_hat = sep(mix)
    assert gray_hat.shape == (3, 3, 32, 32) and 0 <= gray_hat.min() and color_hat.max() <= 1
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert metrics["test_pairs"] == 10000 and metrics["model"] == "unet"


@requires_real_data
def test_shipped_model_separates_real_test_pairs_with_its_reported_quality(tmp_path):
    dm = MixDataModule(root=REAL_ROOT, test_pairs=1000, val_holdout=5000)
    dm.setup("test")
    mix, mnist, cifar = dm.fixed_batch("test", 1000)
    sep = load_separator(SHIPPED / "model.ckpt")
    gray_hat, color_hat = sep(mix)
    scores = {}
    for name, pred, target in (("mnist", gray_hat, mnist), ("cifar", color_hat, cifar)):
        m = image_metrics()
        m.update(pred, target)
        scores.update({f"{name}_{k}": float(v) for k, v in m.compute().items()})
    shipped = json.loads((SHIPPED / "metrics.json").read_text())
    # a 1,000-pair prefix of the same fixed pairs, in fp32: within a little of the 10,000-pair bf16 figures
    for key in ("mnist_psnr", "cifar_psnr"):
        assert scores[key] > shipped[f"test/{key}"] - 1.0
    for key in ("mnist_ssim", "cifar_ssim"):
        assert scores[key] > shipped[f"test/{key}"] - 0.01
    torch.testing.assert_close((gray_hat + color_hat) / 2, mix, atol=2e-3, rtol=0)  # consistent up to clamping


@requires_real_data
def test_shipped_bundles_give_their_checkpoints_outputs_and_onnx_runtime_agrees_on_real_test_mixes():
    """Every shipped model as a bundle separates 256 real test mixes exactly as its checkpoint; the default
    bundle's model.onnx under ONNX Runtime is within 1e-4 of PyTorch (fp32)."""
    import onnxruntime

    dm = MixDataModule(root=REAL_ROOT, test_pairs=256, val_holdout=5000)
    dm.setup("test")
    mix = dm.fixed_batch("test", 256)[0].float()
    for run, bundle in ((SHIPPED, SHIPPED), (SHIPPED.parent / "best_cpu_range", DEFAULT_MODEL)):
        expected = load_separator(run / "model.ckpt")(mix)
        for a, b in zip(expected, load_separator(bundle)(mix)):
            assert torch.equal(a, b), bundle
    session = onnxruntime.InferenceSession(str(DEFAULT_MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"mix": mix.numpy()})
    assert [o.shape for o in outputs] == [(256, 3, 32, 32)] * 2
    assert max(float((torch.from_numpy(o) - e).abs().max()) for o, e in zip(outputs, expected)) <= 1e-4


@requires_real_data
def test_short_conv_dual_run_beats_the_trivial_baseline(compose, tmp_path):
    overrides = [
        f"data.root={REAL_ROOT}",
        "model=conv_dual",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.train_pairs=1600",  # 50 steps; measured on a 2-core CPU without bf16: +15.6 dB MNIST, +12.1 dB CIFAR
        "data.batch_size=32",
        "data.val_pairs=200",
        "data.test_pairs=200",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    metrics = train(compose("config", overrides, tmp_path))
    zero = baseline_rows(REAL_ROOT, None, test_pairs=200)[0]  # MNIST := 0, CIFAR := clamp(2·mix)
    assert metrics["test/mnist_psnr"] > zero["test/mnist_psnr"] + 10.0  # the bottleneck version: +4.3 in 188 steps
    assert metrics["test/cifar_psnr"] > zero["test/cifar_psnr"] + 8.0  # (+1.1 dB CIFAR)
