"""Quality levers: the 8 flips/rotations (training augmentation, test-time self-ensemble), EMA weights and the
one-cycle schedule laid over the time budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixsep.data.augment import TRANSFORMS, dihedral, undo_dihedral
from mixsep.errors import ConfigError
from mixsep.models import UNetSeparator
from mixsep.models.metrics import TEST_KEYS
from mixsep.models.module import SeparationModule
from mixsep.run import train


def test_every_transform_is_undone_and_all_eight_differ():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    seen = set()
    for k in range(TRANSFORMS):
        assert torch.equal(undo_dihedral(dihedral(x, k), k), x)
        seen.add(tuple(dihedral(x, k).flatten().tolist()))
    assert len(seen) == TRANSFORMS


def test_self_ensemble_averages_the_eight_and_keeps_mixture_consistency():
    torch.manual_seed(0)
    module = SeparationModule(UNetSeparator(width=4, depth=2), tta=True).eval()
    mix = torch.rand(3, 3, 32, 32)
    plain_out = module(mix)
    assert "8 flips/rotations: 8 network passes" in module.use_test_time_ensemble(dihedral=True)
    mnist, cifar = module(mix)
    plain = [undo_dihedral(module.net(dihedral(mix, k))[0], k) for k in range(TRANSFORMS)]
    torch.testing.assert_close(mnist, torch.stack(plain).mean(0))
    assert not torch.allclose(mnist, plain_out[0])  # the flag saved in hparams alone does not switch it on
    torch.testing.assert_close((mnist + cifar) / 2, mix, atol=1e-6, rtol=0)
    module.train()
    assert torch.equal(module(mix)[0], module.net(mix)[0])  # training never averages


def test_ema_augmentation_and_tta_run_and_are_recorded(compose, tiny_overrides, tmp_path):
    overrides = tiny_overrides + [
        "model=unet",
        "callbacks=ema",
        "callbacks.ema.update_starting_at_step=0",
        "data.dihedral_augment=true",
        "model.tta=true",
        "trainer.max_epochs=2",
    ]
    metrics = train(compose("config", overrides, tmp_path))
    assert metrics["tta"] is True and all(math.isfinite(metrics[k]) for k in TEST_KEYS)
    ckpt = torch.load(metrics["checkpoint"], weights_only=False)
    assert "current_model_state" in ckpt  # Lightning's EMA: state_dict holds the averaged weights
    assert any(
        not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k])
        for k in ckpt["state_dict"]
        if k.startswith("net.") and "weight" in k
    )


def _timer_at(seconds: float, budget: str = "00:00:01:40"):
    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration=budget)  # 100 s
    timer.load_state_dict({"time_elapsed": {"train": seconds}})  # as a resumed run's Timer
    return timer


def test_time_onecycle_follows_onecycle_lr_over_the_time_budget():
    from types import SimpleNamespace

    from mixsep.models.schedules import onecycle_over_budget

    def time_onecycle(timer):
        return onecycle_over_budget(SimpleNamespace(callbacks=[timer]), by_steps=False)

    steps, lr = 1001, 3e-3
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    reference = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    by_step = []
    for _ in range(steps):
        by_step.append(opt.param_groups[0]["lr"])
        opt.step()
        reference.step()
    for step in (0, 75, 150, 400, 700, 1000):
        factor = time_onecycle(_timer_at(100 * step / (steps - 1)))(step)
        assert math.isclose(factor * lr, by_step[step], rel_tol=0.02, abs_tol=1e-8), step
    assert time_onecycle(_timer_at(250))(0) * lr == pytest.approx(lr / 25e4)  # past the budget: the floor


def test_time_onecycle_needs_max_time_and_fills_the_budget(compose, tiny_overrides, tmp_path):
    from mixsep.errors import ConfigError

    overrides = tiny_overrides + ["model=unet", "model.scheduler=onecycle_time", "trainer.max_epochs=2"]
    with pytest.raises(ConfigError, match="trainer.max_time"):
        train(compose("config", overrides, tmp_path / "no_budget"))
    overrides += ["trainer.max_epochs=1000", "trainer.max_time=00:00:00:06"]
    metrics = train(compose("config", overrides, tmp_path / "budget"))
    assert 5 <= metrics["train_seconds"] < 30 and all(math.isfinite(metrics[k]) for k in TEST_KEYS)
    ckpt = torch.load(tmp_path / "budget" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == metrics["global_step"]  # last.ckpt is the final state, improved or not
    (lr,) = ckpt["lr_schedulers"][0]["_last_lr"]
    assert lr < 2e-3 / 20  # model.lr annealed (to under a twentieth) by the end of the budget


def test_budget_onecycle_anneals_at_the_last_epoch_or_when_the_time_is_up(compose, tiny_overrides, tmp_path):
    """The families' default schedule: over the epochs' steps without trainer.max_time, over the clock with it."""
    base = tiny_overrides + ["model=unet", "model.scheduler=onecycle_budget", "model.lr=2e-3"]
    by_steps = train(compose("config", base + ["trainer.max_epochs=3"], tmp_path / "steps"))
    ckpt = torch.load(tmp_path / "steps" / "checkpoints" / "last.ckpt", weights_only=False)
    (lr,) = ckpt["lr_schedulers"][0]["_last_lr"]
    assert by_steps["global_step"] == 12 and lr < 2e-3 / 20  # annealed at the last of 3 epochs' 12 steps
    timed = base + ["trainer.max_epochs=100000", "trainer.max_time=00:00:00:06"]
    by_time = train(compose("config", timed, tmp_path / "time"))
    ckpt = torch.load(tmp_path / "time" / "checkpoints" / "last.ckpt", weights_only=False)
    (lr,) = ckpt["lr_schedulers"][0]["_last_lr"]
    assert 5 <= by_time["train_seconds"] < 30 and lr < 2e-3 / 20  # annealed when the 6 seconds were up
    with pytest.raises(ConfigError, match="needs a budget"):
        train(compose("config", base + ["trainer.max_epochs=-1"], tmp_path / "none"))


def test_color_flip_mirrors_about_half_the_colour_images_and_never_the_digits():
    from mixsep.data.datamodule import MixDataModule, mirror_half

    torch.manual_seed(0)
    images = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8)
    out = mirror_half(images)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert (flipped | kept).all() and 150 < int(flipped.sum()) < 250

    class Stage:  # what on_after_batch_transfer reads of the trainer
        training = True

    dm = MixDataModule(root="unused", color_flip=True)
    dm.trainer = Stage()
    mnist_u8 = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
    mix, mnist, cifar = dm.on_after_batch_transfer((mnist_u8, images[:64]), 0)
    torch.testing.assert_close(mnist[:, :1], mnist_u8.float() / 255)  # digits as they were
    torch.testing.assert_close((mnist + cifar) / 2, mix)
    assert not torch.equal(cifar, images[:64].float() / 255)
    Stage.training = False  # validation and test pairs are never changed
    _, _, cifar = dm.on_after_batch_transfer((mnist_u8, images[:64]), 0)
    torch.testing.assert_close(cifar, images[:64].float() / 255)


def test_color_permute_reorders_each_colour_images_channels_and_never_the_digits():
    from mixsep.data.datamodule import MixDataModule

    torch.manual_seed(0)
    mnist = torch.randint(0, 256, (600, 1, 32, 32), dtype=torch.uint8)
    cifar = torch.randint(0, 256, (600, 3, 32, 32), dtype=torch.uint8)
    dm = MixDataModule(root="unused", color_permute=True)
    dm.trainer = type("T", (), {"training": True, "overfit_batches": 0})()
    mix, digits, colours = dm.on_after_batch_transfer((mnist, cifar), 0)
    torch.testing.assert_close(digits, mnist.float().div(255).expand(-1, 3, -1, -1))  # the digit as it was
    seen = set()
    for before, after in zip(cifar, (colours * 255).round().to(torch.uint8)):
        order = tuple(next(c for c in range(3) if torch.equal(after[k], before[c])) for k in range(3))
        seen.add(order)
    assert len(seen) == 6  # all six channel orders occur, each image a permutation of its own channels
    torch.testing.assert_close(mix, (digits + colours) / 2)
    dm.trainer.training = False
    _, _, untouched = dm.on_after_batch_transfer((mnist, cifar), 0)
    torch.testing.assert_close(untouched, cifar.float() / 255)  # never at evaluation


def test_the_colour_order_self_ensemble_averages_the_six_back_ordered_estimates():
    from mixsep.data.augment import CHANNEL_ORDERS, reorder_channels, undo_reorder_channels
    from mixsep.models import UNetSeparator
    from mixsep.models.module import SeparationModule

    x = torch.rand(2, 3, 32, 32)
    for k in range(6):
        torch.testing.assert_close(undo_reorder_channels(reorder_channels(x, k), k), x)
    torch.manual_seed(0)
    module = SeparationModule(UNetSeparator(width=8, depth=2)).eval()
    assert "6 RGB orders: 6 network passes" in module.use_test_time_ensemble(color=True)
    with torch.no_grad():
        mnist, cifar = module(x)
        plain = [module.net(reorder_channels(x, k)) for k in range(6)]
    expected = [torch.stack([undo_reorder_channels(p[i], k) for k, p in enumerate(plain)]).mean(0) for i in (0, 1)]
    torch.testing.assert_close(mnist, expected[0])
    torch.testing.assert_close(cifar, expected[1])
    torch.testing.assert_close((mnist + cifar) / 2, x, atol=1e-5, rtol=0)  # still the mix, for the U-Net
    assert len(CHANNEL_ORDERS) == 6


def test_the_default_optimizer_config_is_the_recipes_adam_and_any_torch_optimizer_and_scheduler_can_be_named():
    net = UNetSeparator(width=4, depth=2)
    default = SeparationModule(net, lr=3e-3)
    optimizer = default.configure_optimizers()
    reference = torch.optim.Adam(net.parameters(), lr=3e-3)  # the recipes' optimizer before it was a config
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults == reference.defaults

    module = SeparationModule(
        net,
        lr=0.1,
        weight_decay=0.01,
        optimizer={"_target_": "torch.optim.SGD", "momentum": 0.9},
        scheduler={"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2, "gamma": 0.5},
    )
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 0.01 and configured["lr_scheduler"]["interval"] == "step"
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)
    assert "scheduler" in module.hparams and module.hparams["scheduler"] is None  # the file keeps plain data only

    with pytest.raises(ConfigError, match=r"model.optimizer \(torch.optim.Nothing\) cannot be built"):
        SeparationModule(net, optimizer={"_target_": "torch.optim.Nothing"}).configure_optimizers()
    with pytest.raises(ConfigError, match="model.scheduler is a mapping with _target_"):
        SeparationModule(net, scheduler={"step_size": 2})


def test_per_pair_scores_are_every_declared_score_of_each_pair_in_the_pairs_order():
    """The test pass keeps each pair's declared scores (a user's beside PSNR and SSIM), in the fixed order of the
    pairs across batches; cifar_sub_* is logged, never kept per pair."""
    from mixsep.models.metrics import SCORES, Score, register_score

    register_score(Score("ms_err", lambda p, t: (p - t).abs().mean(dim=(1, 2, 3))))
    try:
        torch.manual_seed(0)
        module = SeparationModule(UNetSeparator(width=4, depth=2), subtraction_metrics=True).eval()
        g = torch.Generator().manual_seed(1)
        gray, color = torch.rand(7, 3, 32, 32, generator=g), torch.rand(7, 3, 32, 32, generator=g)
        batches = [((gray + color)[s] / 2, gray[s], color[s]) for s in (slice(0, 4), slice(4, 7))]
        with torch.no_grad():
            for batch in batches:
                module._eval_step(batch, "test")
            module._eval_epoch_end("test")
            gray_hat = torch.cat([module(mix)[0] for mix, _, _ in batches])
        kept = module.per_pair_scores["test"]
        assert set(kept) == {"pair"} | {f"{s}_{k}" for s in ("mnist", "cifar") for k in ("psnr", "ssim", "ms_err")}
        assert kept["pair"].tolist() == list(range(7))
        for name, score in SCORES.items():
            expected = score.per_image(gray_hat.clamp(0, 1), gray).numpy()
            np.testing.assert_allclose(kept[f"mnist_{name}"], expected, rtol=1e-6, atol=1e-6)
    finally:
        del SCORES["ms_err"]
