"""What the dashboards receive, read back with their owners' readers: W&B's offline run files (and PIL for
the pixels of its images), TensorBoard's EventAccumulator."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli_here, wandb_records

pytestmark = pytest.mark.slow  # the real command line (in this process)


def not_blank(png: bytes | Path) -> np.ndarray:
    pixels = np.asarray(Image.open(io.BytesIO(png) if isinstance(png, bytes) else png).convert("RGB"))
    assert pixels.std() > 10, "a sample picture of one flat value"
    return pixels


def test_wandb_and_tensorboard_get_sample_pictures_and_the_final_scores(tiny_overrides, tmp_path, capfd, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = tiny_overrides + ["logger=[tensorboard,wandb]", "trainer.max_epochs=2", f"hydra.run.dir={run}"]
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_cli_here(args, capfd)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())

    # W&B: one picture per validation epoch, in the offline run's media; the scores in its summary
    (session,) = (run / "wandb").glob("offline-run-*")
    pictures = sorted((session / "files" / "media" / "images").glob("samples_*.png"))
    assert len(pictures) == 2
    pixels = not_blank(pictures[-1])
    assert pixels.shape[0] > 5 * 32 and pixels.shape[1] > 4 * 32  # 5 rows of images, 4 sample pairs
    summary = {}
    for record in wandb_records(next(session.glob("*.wandb"))):
        if record.HasField("summary"):
            summary.update({item.key or "/".join(item.nested_key): item.value_json for item in record.summary.update})
    for key in ("test/mnist_psnr", "test/cifar_psnr", "objective"):
        assert float(summary[key]) == pytest.approx(metrics[key], rel=1e-6)

    # TensorBoard: one run folder, the pictures per epoch, hp_metric = the objective (not -1)
    folders = {p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(folders) == 1
    events = EventAccumulator(str(folders.pop()), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    images = events.Images("samples")
    assert len(images) == 2 and images[0].step < images[1].step
    not_blank(images[-1].encoded_image_string)
    (hp_metric,) = events.Scalars("hp_metric")
    assert hp_metric.value == pytest.approx(metrics["objective"], rel=1e-5) and hp_metric.value != -1
    assert events.Scalars("final/test/mnist_psnr")[-1].value == pytest.approx(metrics["test/mnist_psnr"], rel=1e-5)
