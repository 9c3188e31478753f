from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixsep.report import leaderboard as report
from tests.helpers import report_main


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
    models = [line.split("|")[3].strip() for line in ranked]  # columns: #, run, model, ...
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
    # mean ± std over the seeds, and the t-interval of the mean (2 seeds: 21 ± t(0.975, 1) · 1.414 / √2)
    assert "| 0.001 | 2 | 21.000 ± 1.414 [8.294, 33.706] |" in text
    assert "| 0.01 | 2 | 24.000 ± 1.414 [11.294, 36.706] |" in text
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


def test_rows_are_named_by_run_folder_and_the_chart_stays_in_the_folders_given(tmp_path, tiny_root, monkeypatch):
    runs = tmp_path / "outputs"
    _run(runs / "unet_a", "unet", 30.0, 30.0)
    _run(runs / "unet_b", "unet", 31.0, 31.0)
    _run(runs / "other", "unet", 25.0, 25.0, test_pairs=8)  # another group: 8 test pairs
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    args = ["outputs", "--data-root", str(tiny_root), "--cache-dir", str(tmp_path / "cache"), "--test-pairs", "12"]
    text = report.main(args)
    assert "| outputs/unet_a | unet |" in text and "| outputs/unet_b | unet |" in text  # two unets told apart
    assert (runs / "leaderboard.png").is_file() and not (tmp_path / "leaderboard.png").exists()
    from PIL import Image

    one_group_height = Image.open(runs / "leaderboard.png").size[1]
    report.main([*args, "-o", str(tmp_path / "board.md")])
    assert (tmp_path / "board.md").read_text().startswith(text.split("\n")[0])
    assert Image.open(tmp_path / "board.png").size[1] == one_group_height  # the chart beside the Markdown
    assert "Scored on 8 test pairs" in text and "Scored on 12 test pairs" in text


def test_a_log_sampled_parameter_gets_a_log_axis(tmp_path):
    from mixsep.report.sweep import log_sampled

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      model.lr: tag(log, interval(1e-4, 1e-2))\n"
        "      data.batch_size: choice(32, 64)\n"
    )
    assert log_sampled(sweep) == {"model.lr"}


def test_equal_psnr_curves_are_drawn_once_and_labelled(tmp_path):
    from mixsep.training.artifacts import psnr_curves

    same = [(1, 20.0), (2, 25.0)]
    merged = psnr_curves({"train": [], "val": [], "val/mnist_psnr": same, "val/cifar_psnr": list(same)})
    assert list(merged) == ["MNIST and CIFAR (equal: CIFAR = 2·mix − MNIST)"]
    apart = psnr_curves({"val/mnist_psnr": same, "val/cifar_psnr": [(1, 18.0), (2, 22.0)]})
    assert sorted(apart) == ["val/cifar_psnr", "val/mnist_psnr"]


def _scores(folder: Path, mnist: np.ndarray, cifar: np.ndarray) -> None:
    from mixsep.record.scores import write_scores

    write_scores(
        folder / "scores.npz",
        {
            "pair": np.arange(len(mnist)),
            "mnist_psnr": mnist,
            "mnist_ssim": mnist / 40,
            "cifar_psnr": cifar,
            "cifar_ssim": cifar / 40,
        },
    )


def test_the_leaderboard_and_compare_give_paired_intervals(tmp_path, tiny_root, capsys):
    rng = np.random.default_rng(0)
    hard = rng.normal(0, 2, 12)
    runs = tmp_path / "outputs"
    _run(runs / "a", "unet", 30.2, 30.2)
    _run(runs / "b", "unet", 30.0, 30.0)
    _scores(runs / "a", 30.2 + hard, 30.2 + hard)
    _scores(runs / "b", 30.0 + hard + rng.normal(0, 0.01, 12), 30.0 + hard)
    text = report_main(runs, tmp_path, tiny_root, "--test-pairs", "12")
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| ")}
    row_a, row_b = (next(v for k, v in rows.items() if k.endswith(f"outputs/{n}")) for n in "ab")
    assert row_a.rstrip().endswith("| best |")
    delta = row_b.split("|")[-2].strip()  # "-0.20 [lo, hi]": paired, so tight around -0.2
    mean, lo, hi = (float(v) for v in delta.replace("[", " ").replace("]", " ").replace(",", " ").split())
    assert mean == pytest.approx(-0.2, abs=0.01) and -0.22 < lo <= hi < -0.18
    compared = report.main(["--compare", str(runs / "a"), str(runs / "b")])
    assert "| psnr (both) |" in compared and "A − B (paired)" in compared
    from mixsep.errors import ConfigError

    with pytest.raises(ConfigError, match="no per-pair scores"):  # the bad-input table checks the one line
        report.main(["--compare", str(runs / "a"), str(tiny_root)])
