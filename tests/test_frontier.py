"""Quality levers: the 8 flips/rotations (training augmentation, test-time self-ensemble) and EMA weights."""

from __future__ import annotations

import math

import torch

from mixsep.models import UNetSeparator
from mixsep.module import SeparationModule
from mixsep.run import TEST_KEYS, train
from mixsep.symmetry import TRANSFORMS, dihedral, undo_dihedral
from tests.test_run import compose_cfg


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
    mnist, cifar = module(mix)
    plain = [undo_dihedral(module._forward(dihedral(mix, k))[0], k) for k in range(TRANSFORMS)]
    torch.testing.assert_close(mnist, torch.stack(plain).mean(0))
    torch.testing.assert_close((mnist + cifar) / 2, mix, atol=1e-6, rtol=0)
    module.train()
    assert torch.equal(module(mix)[0], module._forward(mix)[0])  # training never averages


def test_ema_augmentation_and_tta_run_and_are_recorded(tiny_overrides, tmp_path):
    overrides = tiny_overrides + [
        "model=unet",
        "callbacks=ema",
        "callbacks.ema.update_starting_at_step=0",
        "data.dihedral_augment=true",
        "model.tta=true",
        "trainer.max_epochs=2",
    ]
    metrics = train(compose_cfg("config", overrides, tmp_path))
    assert metrics["tta"] is True and all(math.isfinite(metrics[k]) for k in TEST_KEYS)
    ckpt = torch.load(metrics["checkpoint"], weights_only=False)
    assert "current_model_state" in ckpt  # Lightning's EMA: state_dict holds the averaged weights
    assert any(
        not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k])
        for k in ckpt["state_dict"]
        if k.startswith("net.") and "weight" in k
    )
