"""Lightning + Hydra habits: debug modes, trainer pass-through, callbacks, run records, resume anywhere."""

from __future__ import annotations

import json
from pathlib import Path

from mixsep.report import leaderboard as report
from mixsep.run import train
from tests.helpers import REAL_ROOT, csv_rows, requires_real_data

ROOT = Path(__file__).resolve().parents[2]


def last_value(rows: list[dict], key: str) -> float:
    return float([r[key] for r in rows if r.get(key)][-1])


def test_fast_dev_run_records_the_pairs_it_really_scored(compose, tiny_overrides, tmp_path):
    cfg = compose("config", tiny_overrides + ["debug=fdr"], tmp_path)
    assert str(cfg.hydra.run.dir).startswith("outputs/debug/fdr/") and cfg.ckpt_path is None
    metrics = train(cfg)
    assert metrics["test_pairs"] == 8 and metrics["partial_test"]  # one batch of 8, of 12 pairs
    assert metrics["debug_mode"] == "fdr"
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test_pairs"] == 8 and "test/pairs" not in on_disk


def test_a_full_test_is_not_partial(compose, tiny_overrides, tmp_path):
    metrics = train(compose("config", tiny_overrides, tmp_path))
    assert metrics["test_pairs"] == 12 and not metrics["partial_test"] and metrics["debug_mode"] is None


def test_report_leaves_out_debug_runs_and_never_ranks_a_partial_test(compose, tiny_overrides, tiny_root, tmp_path):
    train(compose("config", tiny_overrides + ["debug=limit", "trainer.limit_test_batches=1"], tmp_path / "d"))
    train(compose("config", tiny_overrides + ["trainer.limit_test_batches=1"], tmp_path / "p"))
    train(compose("config", tiny_overrides, tmp_path / "full"))
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["partial_test"]
    args = ["--chart", str(tmp_path / "c.png"), "--data-root", str(tiny_root), "--cache-dir", str(tmp_path / "c")]
    ranked = [r["path"] for r in report.find_runs([tmp_path])]
    assert ranked == [str(tmp_path / "full")]
    listed = report.find_runs([tmp_path], ranked_only=False, include_debug=True)
    assert {Path(r["path"]).name for r in listed} == {"d", "p", "full"}
    text = report.main([str(tmp_path), *args])
    assert sum(line.startswith("| ") and "| conv_dual |" in line for line in text.splitlines()) == 1


def test_overfit_trains_on_the_same_fixed_pairs_every_epoch(compose, tiny_overrides, tmp_path, monkeypatch):
    from mixsep.models.module import SeparationModule

    seen = []
    step = SeparationModule.training_step
    monkeypatch.setattr(
        SeparationModule,
        "training_step",
        lambda self, batch, i: seen.append((self.current_epoch, batch[1].sum().item())) or step(self, batch, i),
    )
    metrics = train(
        compose(
            "config",
            tiny_overrides
            + ["debug=overfit", "trainer.overfit_batches=1", "trainer.max_epochs=3", "data.batch_size=8"],
            tmp_path,
        )
    )
    assert [epoch for epoch, _ in seen] == [0, 1, 2] and len({s for _, s in seen}) == 1  # one batch, the same
    assert metrics["debug_mode"] == "overfit" and str(tmp_path) in metrics["checkpoint"]


@requires_real_data
def test_overfit_memorises_its_pairs_far_below_a_normal_runs_loss(compose, tmp_path):
    common = [
        f"data.root={REAL_ROOT}",
        "debug=overfit",
        "model=conv_dual_bottleneck",  # report 000's net, MSE loss: the losses compared below are positive
        "data.batch_size=8",  # 2 fixed batches of 8 pairs, 36 epochs: memorised as surely as 2 of 32 in 60
        "trainer.max_epochs=36",
        "data.val_pairs=64",
        "trainer.check_val_every_n_epoch=36",
        "data.test_pairs=64",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    train(compose("config", common, tmp_path / "overfit"))  # 2 fixed batches of 8 pairs, 36 epochs
    train(
        compose("config", common + ["trainer.overfit_batches=0", "trainer.limit_train_batches=2"], tmp_path / "normal")
    )  # the same number of steps on fresh pairs
    memorised = last_value(csv_rows(tmp_path / "overfit"), "train/loss_epoch")
    fresh = last_value(csv_rows(tmp_path / "normal"), "train/loss_epoch")
    assert memorised < 0.5 * fresh
    first = float(next(r["train/loss_epoch"] for r in csv_rows(tmp_path / "overfit") if r.get("train/loss_epoch")))
    assert memorised < 0.2 * first  # measured: 0.39 -> 0.030 (0.122 on fresh pairs)


def test_trainer_arguments_need_no_plus_and_the_profiler_writes_its_report(compose, tiny_overrides, tmp_path):
    cfg = compose(
        "config",
        tiny_overrides
        + [
            "trainer.profiler=simple",
            "trainer.gradient_clip_val=1.0",
            "trainer.limit_train_batches=2",
            "trainer.overfit_batches=0",
        ],
        tmp_path / "a",
    )
    assert cfg.trainer.profiler == "simple" and cfg.trainer.gradient_clip_val == 1.0
    train(compose("config", tiny_overrides + ["debug=profiler"], tmp_path / "p"))
    reports = list((tmp_path / "p").glob("*profile*.txt"))
    assert reports and "Action" in reports[0].read_text()
