"""logger=mlflow against a real MLflow tracking server (``mlflow server``, sqlite backend, a local port), read back
with MlflowClient: one run per job of a sweep under the sweep's experiment, the composed config as params, the final
test scores as metrics, the pictures as artifacts, the job's status as the run's; a resumed job continues its run."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from mixsep.record.provenance import short_commit
from tests.helpers import readme_command, run_cli_here

pytestmark = pytest.mark.slow  # pytest-xdist --dist loadfile: this file's tests run on one worker, one at a time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(root / "server.log", "w"),
        stderr=subprocess.STDOUT,
        # no job runner: the server's background jobs (GenAI evaluation) are not used here, its processes cost CPU
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_a_sweep_logs_one_mlflow_run_per_job_and_a_resumed_job_continues_its_run(
    mlflow_server, tiny_overrides, tmp_path, capfd
):
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    # the README's command, with this test's server in place of its 127.0.0.1:5000
    command = readme_command("logger.mlflow.tracking_uri=http://127.0.0.1:5000").replace(
        "http://127.0.0.1:5000", mlflow_server
    )
    args = shlex.split(command)[3:]  # -m logger=mlflow logger.mlflow.tracking_uri=... model=conv_dual,unet
    logged = ["logger=mlflow", f"logger.mlflow.tracking_uri={mlflow_server}", "experiment_name=mlflow_check"]
    result = run_cli_here(tiny_overrides + args + ["experiment_name=mlflow_check", f"hydra.sweep.dir={sweep}"], capfd)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(f"mlflow_check/{sweep.name}")  # the sweep's runs, grouped
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    by_id = {r.info.run_id: r for r in runs}
    folders = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(folders) == 2
    for job, folder in enumerate(folders):
        job = str(job)
        run = by_id[(folder / "mlflow_run_id.txt").read_text().strip()]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert run.data.params["model/name"] == ("conv_dual", "unet")[int(job)]  # the README's two models
        assert run.data.params["model/_target_"] == "mixsep.models.module.SeparationModule"
        composed = OmegaConf.load(folder / ".hydra" / "config.yaml")
        assert float(run.data.params["model/lr"]) == composed.model.lr  # the composed config, as the job ran it
        assert run.data.params["data/val_pairs"] == "8"
        assert run.data.params["model/net/name"] == ("ConvSkipDual", "UNetSeparator")[int(job)]
        for key in ("test/mnist_psnr", "test/cifar_ssim", "val/psnr"):
            assert run.data.metrics[key] == pytest.approx(metrics[key], rel=1e-6)  # the final scores
        assert run.info.status == "FINISHED"  # the job's finalize
        assert run.data.tags["mixsep.commit"] == short_commit(metrics)  # provenance as tags
        assert run.data.tags["mixsep.provenance.command"] == metrics["provenance"]["command"]
        assert run.info.run_name.startswith(f"{job}:")
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"samples.png", "test_samples.png", "loss.png"} <= names  # validation's latest; the run's own two
        picture = Path(client.download_artifacts(run.info.run_id, "test_samples.png", str(tmp_path / f"dl{job}")))
        pixels = np.asarray(Image.open(picture))
        assert pixels.std() > 0 and pixels.shape == np.asarray(Image.open(folder / "samples.png")).shape

    # job 0 again in its own folder, resumed with a longer budget: the same MLflow run goes on
    job0 = folders[0]
    first_id = (job0 / "mlflow_run_id.txt").read_text().strip()
    steps_before = max(m.step for m in client.get_metric_history(first_id, "train/loss_epoch"))
    resumed = run_cli_here(
        tiny_overrides
        + logged
        + ["model=conv_dual", f"hydra.run.dir={job0}", "ckpt_path=auto", "trainer.max_epochs=2"],
        capfd,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (job0 / "mlflow_run_id.txt").read_text().strip() == first_id
    assert max(m.step for m in client.get_metric_history(first_id, "train/loss_epoch")) > steps_before
    assert len(client.search_runs([experiment.experiment_id])) == 2  # no new run
    assert client.get_run(first_id).info.status == "FINISHED"
    assert client.get_run(first_id).data.params["trainer/max_epochs"] == "1"  # the params it has are kept
