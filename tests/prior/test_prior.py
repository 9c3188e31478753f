"""Every earlier system as a preset: composes, runs one tiny epoch, logs its documented keys."""

from __future__ import annotations

import math

import pytest
import torch

from mixsep.models import MeanAE
from mixsep.models.module import SeparationModule
from mixsep.prior.module import OneImageModule
from mixsep.run import train

PRESET_KEYS = {
    "prior/conv_dual": ["test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim"],
    "prior/mean_ae_subtract": ["test/mix_psnr", "test/mix_ssim", "oracle/mnist_psnr", "oracle/cifar_psnr"],
    "prior/resnet_dual": ["test/mnist_psnr", "test/cifar_psnr", "test/cifar_sub_psnr", "test/cifar_sub_ssim"],
    "prior/mean_ae_norm": ["test/mix_psnr", "test/mix_ssim"],
    "prior/cifar_ae": ["test/psnr", "test/ssim"],
    "prior/cifar_denoise": ["test/psnr", "test/ssim"],
}


@pytest.mark.parametrize("preset", sorted(PRESET_KEYS))
def test_preset_runs_one_tiny_epoch_and_logs_its_keys(compose, preset, tiny_overrides, tmp_path):
    cfg = compose("config", [f"experiment={preset}"] + tiny_overrides, tmp_path)
    metrics = train(cfg)
    assert metrics["experiment"] == preset
    for key in PRESET_KEYS[preset]:
        assert math.isfinite(metrics[key]), key
    if preset != "prior/conv_dual" and preset != "prior/resnet_dual":
        assert "test/mnist_psnr" not in metrics  # no separation score for systems that do not separate
    assert (tmp_path / "samples.png").exists()


def test_denoising_adds_noise_to_the_input_only(tiny_data_kwargs):
    from mixsep.prior.data import CifarTaskDataModule

    dm = CifarTaskDataModule(**tiny_data_kwargs, task="denoise", noise_std=0.1)
    dm.setup("fit")
    mnist_u8, cifar_u8 = next(iter(dm.test_dataloader()))
    noisy, clean = dm.make_batch(mnist_u8, cifar_u8)
    assert torch.equal(clean, cifar_u8.float() / 255)  # the target is the clean image
    noise = noisy - clean
    assert 0.04 < noise.std() < 0.06  # sigma 0.1 on the [-1, 1] scale is 0.05 on [0, 1]
    again, _ = dm.make_batch(mnist_u8, cifar_u8)
    assert torch.equal(noisy, again)  # evaluation noise is fixed


def test_normalisation_is_undone_before_metrics():
    torch.manual_seed(0)

    class Identity(torch.nn.Module):
        outputs = "image"

        def forward(self, x):
            assert x.min() < 0  # the net sees [-1, 1] images
            return x

    module = OneImageModule(Identity(), normalize=True, task="reconstruct")
    images = torch.rand(4, 3, 32, 32)
    out = module(images)
    torch.testing.assert_close(out, images)  # back in [0, 1]: a perfect reconstruction, not a shifted one
    module._eval_step((images, images), "test")
    assert module.metrics["test_image"].compute()["test/psnr"] > 60


def test_separator_models_refuse_one_image_tasks_and_vice_versa():
    from mixsep.models import ConvDual
    from mixsep.prior.data import CifarTaskDataModule

    with pytest.raises(ValueError, match="data.task='separate' is not one of"):
        CifarTaskDataModule(task="separate")
    with pytest.raises(ValueError, match="gives back one image"):  # the separators' module refuses it ...
        SeparationModule(MeanAE())
    assert not hasattr(OneImageModule(MeanAE()), "separate")  # ... and its own module does not separate
    assert isinstance(ConvDual()(torch.rand(1, 3, 32, 32)), tuple)


def test_a_one_image_checkpoint_evaluates_with_its_own_module(compose, tiny_overrides, tmp_path):
    """``evaluate`` of an earlier report's checkpoint: ``load_module`` gives prior's OneImageModule (found through
    the lazy table in models/separator.py: models/ never imports prior/), scored as its run tested it."""
    from mixsep.evaluate import evaluate
    from mixsep.models.separator import load_module

    run = train(compose("config", ["experiment=prior/mean_ae_norm", *tiny_overrides], tmp_path / "run"))
    assert isinstance(load_module(run["checkpoint"]), OneImageModule)
    data = [o for o in tiny_overrides if o.startswith("data.")]
    overrides = [f"ckpt_path={run['checkpoint']}", *data, "trainer.accelerator=cpu", "samples=4"]
    scored = evaluate(compose("evaluate", overrides, tmp_path / "eval"))
    assert scored["test/mix_psnr"] == pytest.approx(run["test/mix_psnr"], abs=1e-4)
    assert (tmp_path / "eval" / "metrics.json").is_file() and (tmp_path / "eval" / "samples.png").is_file()
