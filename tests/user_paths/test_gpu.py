"""The GPU path (``pytest -m gpu``): bf16-mixed training, data kept in GPU memory, channels-last, the
8-transform self-ensemble and the divergence check, each through the real Lightning Trainer on a GPU.
Skipped without a CUDA GPU (CI has none); benchmarks/gpu_check.py runs them on a GPU node."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from mixsep.data.datamodule import MixDataModule
from mixsep.errors import TrainingDivergedError
from mixsep.models.module import SeparationModule

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
NET = {"_target_": "mixsep.models.UNetSeparator", "width": 8, "depth": 2}


def trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_bf16_training_keeps_the_data_in_gpu_memory(tiny_data_kwargs):
    data = MixDataModule(**tiny_data_kwargs, data_on_device=True)
    module = SeparationModule(net=NET, loss="psnr", channels_last=True)
    t = trainer(precision="bf16-mixed")
    t.fit(module, datamodule=data)
    assert data.splits.gray_train.device.type == "cuda"  # batches never cross the bus
    assert next(module.parameters()).device.type == "cuda"
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    scores = t.test(module, datamodule=data, verbose=False)[0]
    assert all(math.isfinite(v) for v in scores.values())


def test_tta_on_gpu_matches_the_plain_prediction_shape_and_range(tiny_data_kwargs):
    data = MixDataModule(**tiny_data_kwargs)
    data.setup("test")
    mix, _, _ = data.fixed_batch("test", 4)
    plain = SeparationModule(net=NET).cuda().eval()
    tta = SeparationModule(net=NET, tta=True).cuda().eval()
    tta.load_state_dict(plain.state_dict())
    tta.use_test_time_ensemble(dihedral=True)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        a, b = plain(mix.cuda()), tta(mix.cuda())
    for x, y in zip(a, b):
        assert x.shape == y.shape and 0 <= float(y.min()) and float(y.max()) <= 1


def test_divergence_is_stopped_with_the_step_named(tiny_data_kwargs):
    data = MixDataModule(**tiny_data_kwargs)
    module = SeparationModule(net=NET, lr=1e30)  # a learning rate that must blow up
    with pytest.raises(TrainingDivergedError, match="step"):
        trainer(precision="bf16-mixed", log_every_n_steps=1, max_epochs=3).fit(module, datamodule=data)
