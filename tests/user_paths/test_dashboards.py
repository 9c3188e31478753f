"""What the dashboards receive, read back with their owners' readers: W&B's offline run files (and PIL for
the pixels of its images), TensorBoard's EventAccumulator; and what a Lightning logger of a user's own receives
from its YAML alone (tests/user_paths/own_logger.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixsep.training.loggers import finish_dashboards
from tests.helpers import run_cli_here, run_in_this_process, tiny_run_overrides, wandb_records
from tests.user_paths.own_logger import RecordingLogger

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
    assert events.Scalars("test/mnist_psnr")[-1].value == pytest.approx(metrics["test/mnist_psnr"], rel=1e-5)
    for key in ("test_samples", "loss"):  # the run's samples.png and loss.png, at the end
        (picture,) = events.Images(key)
        not_blank(picture.encoded_image_string)


OWN_LOGGER_YAML = """\
defaults:
  - csv
recording:
  _target_: tests.user_paths.own_logger.RecordingLogger
  save_dir: ${paths.output_dir}
  run_id: null   # null: the job's run id, kept in <run dir>/recording_run_id.txt
  name: null     # null: the job's name
"""


def test_a_lightning_logger_of_a_users_own_gets_what_the_shipped_ones_get_from_its_yaml_alone(tmp_path):
    """Parameters, the final scores beside them (the numbers of metrics.json), the sample pictures, the job's status
    through finalize, and one run across a resume in the same folder (as a re-queued job does)."""
    (tmp_path / "conf" / "logger").mkdir(parents=True)
    (tmp_path / "conf" / "logger" / "recording.yaml").write_text(OWN_LOGGER_YAML)
    run = tmp_path / "run"
    args = ["python", "-m", "mixsep.run", "--config-dir", str(tmp_path / "conf"), *tiny_run_overrides(tmp_path)]
    args += ["logger=recording", "trainer.max_epochs=1", "experiment_name=mine", f"hydra.run.dir={run}"]
    assert run_in_this_process(args) == 0
    received, metrics = (json.loads((run / name).read_text()) for name in ("received.json", "metrics.json"))

    assert received["name"] == "mine" and (run / "recording_run_id.txt").read_text() == received["run_id"] + "\n"
    composed = received["params"][0]["params"]
    assert composed["model"]["net"]["name"] == "ConvSkipDual" and composed["data"]["val_pairs"] == 8
    final = received["params"][-1]
    assert final["params"] == composed and final["step"] == metrics["global_step"]
    for key in ("test/mnist_psnr", "test/cifar_ssim", "val/psnr", "objective"):
        assert final["metrics"][key] == metrics[key]  # the same numbers as metrics.json
    assert final["metrics"]["hp_metric"] == metrics["objective"]
    pictures = {p["key"]: p for p in received["pictures"]}
    assert pictures["samples"]["shape"][2] == 3 and pictures["samples"]["caption"][0].startswith("rows: mix")
    assert {"test_samples", "loss"} <= set(pictures)
    assert received["finalize"][-1] == "success"  # the job's end, after Lightning's own at each stage's end

    again = args[:-2] + ["trainer.max_epochs=2", "ckpt_path=auto", f"hydra.run.dir={run}"]
    assert run_in_this_process(again) == 0
    resumed = json.loads((run / "received.json").read_text())
    assert resumed["run_id"] == received["run_id"] and json.loads((run / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    ("job_status", "finalized"),
    [
        ("completed", "success"),
        ("pruned", "success"),
        ("failed", "failed"),
        ("cancelled", "failed"),
        ("requeued", "finished"),
    ],
)
def test_a_jobs_status_reaches_finalize_in_the_words_lightnings_loggers_take(tmp_path, job_status, finalized):
    logger = RecordingLogger(str(tmp_path))
    finish_dashboards([logger], job_status)
    assert json.loads((tmp_path / "received.json").read_text())["finalize"] == [finalized]


def test_a_requeued_jobs_wandb_run_is_marked_preempting_and_closed(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from mixsep.training.loggers import build_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    node = {"_target_": "mixsep.training.loggers.WandbLogger", "id": None, "save_dir": str(tmp_path)}
    (logger,) = build_loggers(OmegaConf.create({"wandb": node}), tmp_path, "exp", None)
    finish_dashboards([logger], "requeued")
    (session,) = tmp_path.glob(f"wandb/offline-run-*-{logger.version}")
    assert any(r.HasField("preempting") for r in wandb_records(session / f"run-{logger.version}.wandb"))
    assert (tmp_path / "wandb_id.txt").read_text() == f"{logger.version}\n"  # the next allocation's run
