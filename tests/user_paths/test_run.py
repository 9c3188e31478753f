"""The run and evaluate entries end to end, one tiny epoch on the tiny datasets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mixsep import load_separator
from mixsep.evaluate import evaluate
from mixsep.models.metrics import TEST_KEYS
from mixsep.models.separator import CheckpointError
from mixsep.run import train
from tests.helpers import CONF, run_in_this_process


@pytest.fixture(scope="module")
def trained_run(compose, tmp_path_factory):
    """One tiny conv_dual run shared by the tests below."""
    from tests.helpers import tiny_run_overrides

    tmp = tmp_path_factory.mktemp("run")
    overrides = [
        *tiny_run_overrides(tmp),
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "samples=4",
        "model=conv_dual",
    ]
    out = tmp / "out"
    metrics = train(compose("config", overrides, out))
    return out, metrics, overrides


def test_run_writes_metrics_samples_loss_curve_and_checkpoints(trained_run):
    out, metrics, _ = trained_run
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in TEST_KEYS:
        assert math.isfinite(on_disk[key])
    assert on_disk["model"] == "conv_dual" and on_disk["params"] > 1_000_000
    assert on_disk["global_step"] == 8 and on_disk["train_seconds"] > 0 and on_disk["test_pairs"] == 12
    assert (out / "samples.png").stat().st_size > 1000 and (out / "loss.png").stat().st_size > 1000
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("best") for n in ckpts)
    assert (out / "csv" / "metrics.csv").exists()


def test_per_pair_scores_are_written_and_average_to_the_logged_scores(trained_run):
    import numpy as np

    out, metrics, _ = trained_run
    for name, stage in (("scores.npz", "test"), ("val_scores.npz", "val")):
        with np.load(out / name) as scores:
            assert list(scores["pair"]) == list(range(12 if stage == "test" else 8))
            for key in ("mnist_psnr", "mnist_ssim", "cifar_psnr", "cifar_ssim"):
                assert float(scores[key].mean()) == pytest.approx(metrics[f"{stage}/{key}"], abs=1e-4)


def test_a_bundle_of_a_real_run_gives_its_checkpoints_outputs_and_its_card_the_runs_scores(trained_run, tmp_path):
    """python -m mixsep.export RUN DIR: the bundle separates exactly as the tested checkpoint (through
    load_separator and the LightningModule), and its card's front matter holds metrics.json's test scores."""
    import yaml

    from mixsep.export import export_bundle
    from mixsep.models.separator import load_module

    out, metrics, _ = trained_run
    files = export_bundle(out, tmp_path / "bundle")
    assert set(files) == {"model.safetensors", "config.json", "README.md"}
    mix = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ckpt, bundle = Path(metrics["checkpoint"]), tmp_path / "bundle"
    for a, b in zip(load_separator(ckpt)(mix), load_separator(bundle)(mix)):
        assert torch.equal(a, b)
    for a, b in zip(load_module(ckpt).separate(mix), load_module(bundle).separate(mix)):
        assert torch.equal(a, b)
    card = (bundle / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    scores = {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert scores == {k: metrics[k] for k in TEST_KEYS}
    assert f"{metrics['test/mnist_psnr']:.2f} | [" in card  # the table, with its bootstrap interval
    config = json.loads((bundle / "config.json").read_text())
    assert config["architecture"] == "ConvSkipDual" and config["commit"] == metrics["provenance"]["git_commit"]


def test_evaluate_reproduces_the_test_metrics(compose, trained_run, tmp_path):
    out, metrics, overrides = trained_run
    data_overrides = [o for o in overrides if o.startswith("data.")]
    cfg = compose(
        "evaluate",
        data_overrides + [f"ckpt_path={metrics['checkpoint']}", "samples=4", "trainer.accelerator=cpu"],
        tmp_path,
    )
    again = evaluate(cfg)
    for key in TEST_KEYS:
        assert again[key] == pytest.approx(metrics[key], abs=1e-4)
    assert (tmp_path / "samples.png").exists() and (tmp_path / "metrics.json").exists()


def test_load_separator_separates_in_eval_mode_without_gradients(trained_run):
    out, _, _ = trained_run
    sep = load_separator(out / "checkpoints" / "last.ckpt")
    mix = torch.rand(5, 3, 32, 32, requires_grad=True)
    gray_hat, color_hat = sep(mix)
    assert gray_hat.shape == color_hat.shape == (5, 3, 32, 32)
    assert not gray_hat.requires_grad and not sep.net.training
    assert gray_hat.min() >= 0 and color_hat.max() <= 1
    a, _ = sep(mix[:2])
    torch.testing.assert_close(a, gray_hat[:2])  # eval mode: no dropout, no batch statistics
    with pytest.raises(ValueError, match="B, 3, 32, 32"):
        sep(torch.rand(3, 32, 32))


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="No model at"):
        load_separator(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_separator(bad)


def test_training_resumes_from_last_checkpoint(compose, trained_run, tmp_path):
    out, _, overrides = trained_run
    more = [o for o in overrides if not o.startswith("trainer.max_epochs")]
    cfg = compose("config", more + ["trainer.max_epochs=3", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], tmp_path)
    metrics = train(cfg)
    assert metrics["global_step"] == 12  # 8 steps restored + one more epoch of 4


@pytest.mark.parametrize("model", ["conv_dual", "resnet_dual", "single_sub", "unet", "resnet_dual_bottleneck"])
def test_every_model_config_runs_end_to_end_and_separates_from_its_checkpoint(
    compose, model, tiny_overrides, tmp_path, capsys
):
    """Trains on the tiny data, then its checkpoint through load_separator and mixsep.separate: the families
    with exact mixture consistency give back two sources that average to the mix."""
    import numpy as np
    from PIL import Image

    from mixsep import separate as separate_cli

    out = tmp_path / model
    metrics = train(compose("config", tiny_overrides + [f"model={model}"], out))
    assert metrics["model"] == model
    assert all(math.isfinite(metrics[k]) for k in TEST_KEYS)
    sep = load_separator(metrics["checkpoint"])
    gray = (torch.rand(4, 1, 32, 32) > 0.7).float().expand(-1, 3, -1, -1)
    mix = (gray + torch.rand(4, 3, 32, 32)) / 2
    gray_hat, color_hat = sep(mix)
    consistent = not model.endswith("_bottleneck")
    if consistent:
        torch.testing.assert_close((gray_hat + color_hat) / 2, mix, rtol=0, atol=1e-5)
        assert torch.equal(gray_hat[:, 0], gray_hat[:, 2])
    images = tmp_path / "mixes"
    images.mkdir()
    pixels = np.round(mix[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(pixels).save(images / "m.png")
    assert separate_cli.main([str(images), "--ckpt", metrics["checkpoint"], "--out", str(tmp_path / "sep")]) == 0
    read = lambda name: np.asarray(Image.open(tmp_path / "sep" / name).convert("RGB"), dtype=np.float64) / 255
    gray_png, color_png = read("m.gray.png"), read("m.color.png")
    if consistent:
        assert np.abs((gray_png + color_png) / 2 - pixels / 255).max() <= 1 / 255 + 1e-9


@pytest.mark.parametrize("preset", ["best_cpu", "best_gpu", "fast_cpu"])
def test_tuned_presets_run_on_cpu(compose, preset, tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if o != "trainer.accelerator=cpu"] + [f"experiment={preset}"]
    if preset == "best_gpu":  # its width-64 net in bf16, emulated on this CPU: one step shows it runs
        overrides.append("trainer.limit_train_batches=1")
    metrics = train(compose("config", overrides, tmp_path))
    assert metrics["experiment"] == preset and metrics["model"] == "unet"
    assert all(math.isfinite(metrics[k]) for k in TEST_KEYS)


def test_experiment_presets_compose(compose, tiny_overrides, tmp_path):
    for preset in sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml")):
        cfg = compose("config", [f"experiment={preset}"], tmp_path)
        assert cfg.model.name and cfg.experiment_name == preset


def test_wandb_logger_goes_offline_without_a_key(compose, tiny_overrides, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    metrics = train(compose("config", tiny_overrides + ["logger=wandb"], tmp_path / "w"))
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    assert any((tmp_path / "w").rglob("offline-run-*"))
    assert math.isfinite(metrics["test/mnist_psnr"])


@pytest.mark.slow
def test_cli_reports_missing_data_without_a_traceback(tmp_path, capfd):
    def run(*extra) -> tuple[int, str]:
        argv = ["python", "-m", "mixsep.run", f"data.root={tmp_path / 'none'}", f"data.cache_dir={tmp_path / 'c'}"]
        status = run_in_this_process([*argv, f"hydra.run.dir={tmp_path / 'run'}", *extra])
        return status, capfd.readouterr().err

    status, err = run("data.download=false")  # strictly offline: the two fixes, one of them the download
    assert status != 0 and "Traceback" not in err
    assert "data.download=true" in err and "MIXSEP_DATA_ROOT" in err
    # the default downloads; without a network it says the download failed and gives the offline fix only
    status, err = run()
    assert status != 0 and "Traceback" not in err
    assert "download through torchvision failed" in err and "data.root=" in err
    assert "data.download=true" not in err


def test_a_truncated_image_is_named_in_the_error(compose, tiny_overrides, tiny_root, tmp_path):
    from mixsep.errors import DataNotFoundError

    victim = sorted((tiny_root / "cifar10" / "test").rglob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(DataNotFoundError, match=str(victim)) as err:
        train(compose("config", tiny_overrides, tmp_path))
    assert "replace the unreadable file" in str(err.value)


def test_bad_trainer_values_are_config_errors(compose, tiny_overrides, tmp_path):
    from hydra.errors import ConfigCompositionException

    from mixsep.errors import ConfigError

    with pytest.raises(ConfigCompositionException, match="trainer.max_epochs"):  # the schema's type, at composition
        compose("config", tiny_overrides + ["trainer.max_epochs=abc"], tmp_path)
    with pytest.raises(ConfigError, match="trainer"):
        train(compose("config", tiny_overrides + ["trainer.precision=17-bits"], tmp_path))


def test_exported_checkpoint_is_slim_and_separates_identically(trained_run, tmp_path):
    from mixsep import export_checkpoint

    out, _, _ = trained_run
    src = out / "checkpoints" / "last.ckpt"
    dst = export_checkpoint(src, tmp_path / "slim.ckpt")
    assert "optimizer_states" not in torch.load(dst, weights_only=False)
    assert dst.stat().st_size < src.stat().st_size
    mix = torch.rand(2, 3, 32, 32)
    for a, b in zip(load_separator(src)(mix), load_separator(dst)(mix)):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_cli_messages_land_in_hydras_run_log(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    assert run_in_this_process(["python", "-m", "mixsep.run", *tiny_overrides, f"hydra.run.dir={run}"]) == 0
    text = (run / "run.log").read_text()
    assert "wrote" in text and "test/mnist_psnr" in text


def test_metrics_and_the_csv_loggers_config_record_the_code_that_ran(trained_run):
    import subprocess

    import yaml

    out, metrics, _ = trained_run
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=CONF).stdout.strip()
    hparams = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
    for record in (
        metrics["provenance"],
        hparams["provenance"],
        json.loads((out / "metrics.json").read_text())["provenance"],
    ):
        assert record["git_commit"] == (head or None) and record["torch_version"] and record["lightning_version"]
        assert record["mixsep_version"] and record["hydra_core_version"] and record["command"]
