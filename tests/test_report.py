from __future__ import annotations

import json
from pathlib import Path

from mixsep import report


def report_main(folder: Path, tmp_path: Path, data_root: Path, *extra: str, chart: str = "c.png") -> str:
    """``python -m mixsep.report FOLDER`` with its baselines on the tiny data."""
    return report.main(
        [
            str(folder),
            "--chart",
            str(tmp_path / chart),
            "--data-root",
            str(data_root),
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        ]
    )


def _run(folder: Path, model: str, mnist_psnr: float, cifar_psnr: float, **extra) -> None:
    folder.mkdir(parents=True)
    metrics = {
        "model": model,
        "experiment": model,
        "params": 1000,
        "train_seconds": 60.0,
        "hardware": "CPU",
        "test_pairs": 12,
        "test/mnist_psnr": mnist_psnr,
        "test/mnist_ssim": 0.5,
        "test/cifar_psnr": cifar_psnr,
        "test/cifar_ssim": 0.5,
        **extra,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_report_ranks_runs_best_first_with_baselines_and_a_chart(tmp_path, tiny_root, capsys):
    runs = tmp_path / "outputs"
    _run(runs / "a", "weak", 12.0, 14.0)
    _run(runs / "multirun" / "0_x", "strong", 35.0, 35.0)
    _run(runs / "multirun" / "1_y", "middle", 25.0, 20.0)
    _run(runs / "oracle", "mean_ae", 99.0, 99.0, **{"oracle/mnist_psnr": 99.0})
    (runs / "mean").mkdir()
    (runs / "mean" / "metrics.json").write_text(
        json.dumps({"model": "mean_ae", "test/mix_psnr": 40.0, "oracle/mnist_psnr": 44.0})
    )
    (runs / "broken").mkdir()
    (runs / "broken" / "metrics.json").write_text("{not json")
    chart = tmp_path / "board.png"
    text = report_main(runs, tmp_path, tiny_root, "--test-pairs", "12", chart="board.png")
    ranked = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    models = [line.split("|")[2].strip() for line in ranked]
    # the run that only has oracle/mix scores is not ranked; one with test scores is ranked on those alone
    assert "mean_ae" in models and models.index("mean_ae") == 0
    assert models.index("strong") < models.index("middle") < models.index("weak")
    assert sum("baseline" in m for m in models) == 2
    assert "As reported elsewhere" in text and "ORACLE" not in "".join(ranked)
    assert "+48.13 dB" in text
    assert chart.stat().st_size > 1000


def test_oracle_keys_never_rank_a_run(tmp_path, tiny_root):
    runs = tmp_path / "outputs"
    _run(runs / "real", "real", 20.0, 20.0)
    (runs / "mean").mkdir()
    (runs / "mean" / "metrics.json").write_text(
        json.dumps(
            {
                "model": "mean_ae",
                "experiment": "prior/mean_ae_subtract",
                "test/mix_psnr": 40.0,
                "test/mix_ssim": 0.99,
                "oracle/mnist_psnr": 44.0,
                "oracle/cifar_psnr": 44.0,
                "oracle/mnist_ssim": 0.99,
                "oracle/cifar_ssim": 0.99,
            }
        )
    )
    text = report_main(runs, tmp_path, tiny_root, "--test-pairs", "12")
    ranked = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert not any("mean_ae" in line for line in ranked)
    prior = [line for line in text.splitlines() if line.startswith("| prior/mean_ae_subtract")]
    assert prior and all("ORACLE" in line and "ground truth" in line for line in prior)


def test_baselines_score_the_trivial_rules_on_the_fixed_pairs(tiny_root, tmp_path):
    rows = report.baseline_rows(str(tiny_root), str(tmp_path / "cache"), test_pairs=12)
    zero = rows[0]
    assert zero["model"].startswith("baseline: MNIST := 0")
    # MNIST := 0 against mostly-black digits is a finite, poor score; CIFAR := 2·mix is exact where no ink
    assert 0 < zero["test/mnist_psnr"] < 40 and zero["test/cifar_psnr"] > 0
    assert rows == report.baseline_rows(str(tiny_root), str(tmp_path / "cache"), test_pairs=12)


def _job(sweep: Path, name: str, overrides: list[str], objective: float | None, test_psnr: float = 20.0) -> None:
    """A job folder as Hydra and mixsep.run leave it: .hydra/overrides.yaml, metrics.json, status.json."""
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if objective is None:
        (sweep / name / "status.json").write_text(json.dumps({"status": "failed", "error": "model.lr=-1 is bad"}))
        return
    _run_files = {
        "model": "unet",
        "experiment": "s",
        "params": 1,
        "test_pairs": 12,
        "objective": objective,
        "optimized_metric": "val/psnr",
        "test/mnist_psnr": test_psnr,
        "test/cifar_psnr": test_psnr,
        "test/mnist_ssim": 0.5,
        "test/cifar_ssim": 0.5,
    }
    (sweep / name / "metrics.json").write_text(json.dumps(_run_files))
    (sweep / name / "status.json").write_text(json.dumps({"status": "completed"}))


def test_sweep_report_picks_by_validation_and_averages_over_seeds(tmp_path, tiny_root):
    sweep = tmp_path / "multirun" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    # job 1 has the best test score but job 2 the best validation objective: the sweep picks job 2
    _job(sweep, "0_unet", ["data.root=/d", "model.lr=0.001", "seed=0"], 20.0, test_psnr=20.0)
    _job(sweep, "1_unet", ["data.root=/d", "model.lr=0.001", "seed=1"], 22.0, test_psnr=30.0)
    _job(sweep, "2_unet", ["data.root=/d", "model.lr=0.01", "seed=0"], 25.0, test_psnr=21.0)
    _job(sweep, "3_unet", ["data.root=/d", "model.lr=0.01", "seed=1"], 23.0, test_psnr=21.0)
    _job(sweep, "4_unet", ["data.root=/d", "model.lr=-1", "seed=0"], None)
    text = report_main(sweep, tmp_path, tiny_root, "--test-pairs", "12")
    head = next(line for line in text.splitlines() if line.startswith("| job |"))
    assert "model.lr" in head and "seed" in head and "data.root" not in head  # swept overrides only
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "_unet" in line}
    assert rows["2_unet **← pick**"] and not any("pick" in k for k in rows if not k.startswith("2_unet"))
    assert "failed: model.lr=-1 is bad" in rows["4_unet"]
    assert "| 0.001 | 2 | 21.000 ± 1.414 |" in text and "| 0.01 | 2 | 24.000 ± 1.414 |" in text
    assert (sweep / "objective.png").stat().st_size > 1000


def test_sweep_report_shows_requeues_and_cancellations_in_words(tmp_path, tiny_root):
    sweep = tmp_path / "multirun" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    _job(sweep, "0_unet", ["model.lr=0.001"], 20.0)
    _job(sweep, "1_unet", ["model.lr=0.002"], 21.0)
    _job(sweep, "2_unet", ["model.lr=0.003"], 22.0)
    _job(sweep, "3_unet", ["model.lr=0.004"], 23.0)
    states = {
        "0_unet": {"status": "requeued", "reason": "timeout", "requeues": 2},
        "1_unet": {"status": "cancelled", "reason": "SIGTERM", "requeues": 0},
        "2_unet": {"status": "completed", "requeues": 3},
        "3_unet": {"status": "running", "requeues": 1},
    }
    for name, state in states.items():
        (sweep / name / "status.json").write_text(json.dumps(state))
    text = report_main(sweep, tmp_path, tiny_root, "--test-pairs", "12")
    rows = {
        line.split("|")[1].strip().split()[0]: line
        for line in text.splitlines()
        if line.startswith("| ") and "_unet" in line
    }
    assert "| requeued (timeout, 2×) |" in rows["0_unet"]
    assert "| cancelled (SIGTERM) |" in rows["1_unet"]
    assert "| completed (re-queued 3×) |" in rows["2_unet"]
    assert "| running (re-queued 1×) |" in rows["3_unet"]


def test_runs_on_different_test_pair_counts_are_never_ranked_together(tmp_path, tiny_root):
    runs = tmp_path / "outputs"
    _run(runs / "full", "full", 30.0, 30.0)
    _run(runs / "part", "part", 40.0, 40.0, test_pairs=8)
    text = report_main(runs, tmp_path, tiny_root)
    assert "Scored on 8 test pairs of mnist+cifar10" in text and "Scored on 12 test pairs of mnist+cifar10" in text
    tables = text.split("Scored on ")
    eight = next(t for t in tables if t.startswith("8 "))
    twelve = next(t for t in tables if t.startswith("12 "))
    assert "part" in eight and "full" not in eight and "full" in twelve and "part" not in twelve
    assert eight.count("| baseline: ") == 2 and "| 8 |" in eight  # baselines scored on the same 8 pairs
