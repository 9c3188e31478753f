"""What the dashboards receive, read back with their owners' readers: W&B's offline run files (and PIL for
the pixels of its images), TensorBoard's EventAccumulator."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, wandb_records

pytestmark = pytest.mark.slow  # real command lines


def not_blank(png: bytes | Path) -> np.ndarray:
    pixels = np.asarray(Image.open(io.BytesIO(png) if isinstance(png, bytes) else png).convert("RGB"))
    assert pixels.std() > 10, "a sample picture of one flat value"
    return pixels


def test_wandb_gets_sample_pictures_and_the_final_scores(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        tiny_overrides + ["logger=wandb", "trainer.max_epochs=2", f"hydra.run.dir={run}"], WANDB_MODE="offline"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (session,) = (run / "wandb").glob("offline-run-*")
    pictures = sorted((session / "files" / "media" / "images").glob("samples_*.png"))
    assert len(pictures) == 2  # one per validation epoch
    pixels = not_blank(pictures[-1])
    assert pixels.shape[0] > 5 * 32 and pixels.shape[1] > 4 * 32  # 5 rows of images, 4 sample pairs
    summary = {}
    for record in wandb_records(next(session.glob("*.wandb"))):
        if record.HasField("summary"):
            summary.update({item.key or "/".join(item.nested_key): item.value_json for item in record.summary.update})
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test/mnist_psnr", "test/cifar_psnr", "objective"):
        assert float(summary[key]) == pytest.approx(metrics[key], rel=1e-6)


def test_tensorboard_gets_sample_pictures_and_the_real_hparams_metric(tiny_overrides, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = run_cli(tiny_overrides + ["logger=tensorboard", "trainer.max_epochs=2", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr[-3000:]
    folders = {p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(folders) == 1  # one TensorBoard run for the training run
    events = EventAccumulator(str(folders.pop()), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    images = events.Images("samples")
    assert [i.step for i in images] == sorted({i.step for i in images}) and len(images) == 2
    not_blank(images[-1].encoded_image_string)
    metrics = json.loads((run / "metrics.json").read_text())
    (hp_metric,) = events.Scalars("hp_metric")
    assert hp_metric.value == pytest.approx(metrics["objective"], rel=1e-5) and hp_metric.value != -1
    assert events.Scalars("final/test/mnist_psnr")[-1].value == pytest.approx(metrics["test/mnist_psnr"], rel=1e-5)
