"""A resumed checkpoint's trainer state is data: the paths in its checkpoint records are kept only inside the new
run's folder or the checkpoint's own (never a URL), its scores only when finite; what is left out is said, and
nothing outside those two folders is deleted, read or tested."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.utilities.migration import migrate_checkpoint
from omegaconf import OmegaConf

from mixsep.errors import CheckpointError
from mixsep.run import train
from mixsep.training.build import build, build_module
from mixsep.training.callbacks import BestCheckpoint
from mixsep.training.checkpoints import AtomicCheckpointIO, dense_cpu_tensor, inside, restore_errors_named
from mixsep.training.loggers import build_loggers, finish_wandb, kept_run_id
from tests.helpers import compose_config, run_in_this_process, tiny_run_overrides


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list[str]]:
    """Tiny data and its overrides, and one real run of it (``<tmp>/source``) whose checkpoints are crafted."""
    tmp = tmp_path_factory.mktemp("resume")
    overrides = [*tiny_run_overrides(tmp), "logger=none"]
    train(compose_config("config", overrides + ["trainer.max_epochs=1"], tmp / "source"))
    return tmp, overrides


def records(ckpt: dict, monitored: bool) -> list[dict]:
    """The ModelCheckpoint records of ``ckpt``: the best one's (``monitored``) or last.ckpt's."""
    return [
        v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint") and bool(v["monitor"]) == monitored
    ]


def resume(overrides: list[str], path: Path) -> list[str]:
    return overrides + ["trainer.max_epochs=2", f"ckpt_path={path}"]


def crafted(source: Path, folder: Path, change) -> Path:
    """A copy of the real run's last.ckpt in ``folder``, its records changed by ``change(ckpt)``."""
    ckpt = torch.load(source / "checkpoints" / "last.ckpt", weights_only=True)
    change(ckpt)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "last.ckpt")
    return folder / "last.ckpt"


def marker_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "precious"
    folder.mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work\n")
    return folder


def test_inside_resolves_dots_and_links_and_follows_no_url(tmp_path):
    run, outside = tmp_path / "run", marker_folder(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "link").symlink_to(outside)
    assert inside(str(run / "checkpoints" / "best.ckpt"), [run])
    assert not inside(str(run / "checkpoints" / ".." / ".." / "precious" / "thesis.txt"), [run])
    assert not inside(str(run / "checkpoints" / "link" / "thesis.txt"), [run])
    assert not inside(f"local://{run / 'checkpoints' / 'best.ckpt'}", [run])
    assert not inside(f"file://{run / 'checkpoints' / 'best.ckpt'}", [run])
    assert not inside("/etc/passwd", [run]) and not inside(None, [run])


def test_a_record_naming_a_folder_elsewhere_deletes_it_under_lightning_but_not_under_mixsep(tiny, tmp_path, caplog):
    tmp, overrides = tiny
    precious = marker_folder(tmp_path)

    def point_elsewhere(ckpt: dict) -> None:
        for record in records(ckpt, monitored=False):  # last.ckpt's record: its previous file is removed at a save
            record["best_model_path"] = f"local://{precious}"
        best = records(ckpt, monitored=True)[0]  # the best record: a file outside, which main read and failed on
        best.update(
            best_model_path="/etc/passwd", kth_best_model_path="/etc/passwd", best_k_models={"/etc/passwd": 0.0}
        )

    path = crafted(tmp / "source", tmp_path / "download", point_elsewhere)

    # the old way: Lightning restores the record as the file gives it, and removes the folder at the next save
    cfg = compose_config("config", overrides + ["trainer.max_epochs=2"], tmp_path / "plain")
    plain = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=1,
        limit_val_batches=1,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "plain" / "checkpoints", filename="last")],
    )
    plain.fit(build_module(cfg.model), datamodule=build(cfg.data), ckpt_path=path, weights_only=True)
    assert not precious.exists(), "Lightning alone no longer follows a local:// record: the check shows nothing"

    # mixsep: the record's foreign paths are left out with a note, the run ends normally, nothing is touched
    precious = marker_folder(tmp_path / "again")
    path = crafted(tmp / "source", tmp_path / "download2", point_elsewhere)
    looked_at: list[str] = []
    recording = [True]  # an audit hook stays for the session: it records during this run only
    sys.addaudithook(lambda event, args: looked_at.append(str(args[0])) if recording and event == "open" else None)
    stat, lstat = os.stat, os.lstat

    def spy(real):
        return lambda p, *a, **k: (looked_at.append(str(p)), real(p, *a, **k))[1]

    os.stat, os.lstat = spy(stat), spy(lstat)
    try:
        metrics = train(compose_config("config", resume(overrides, path), tmp_path / "run"))
    finally:
        os.stat, os.lstat = stat, lstat
        recording.clear()
    assert (precious / "thesis.txt").read_text() == "years of work\n"
    assert not any("passwd" in p or "precious" in p for p in looked_at), "a foreign path was opened or tested"
    assert "left out of its checkpoint record" in caplog.text and f"local://{precious}" in caplog.text
    assert Path(metrics["checkpoint"]).parent == tmp_path / "run" / "checkpoints"


def test_a_resumed_best_record_cannot_make_the_run_test_another_model(tiny, tmp_path):
    tmp, overrides = tiny
    other = tmp_path / "elsewhere" / "best-other.ckpt"  # another model: the source's best, its weights zeroed
    other.parent.mkdir()
    ckpt = torch.load(next((tmp / "source" / "checkpoints").glob("best*.ckpt")), weights_only=True)
    ckpt["state_dict"] = {k: torch.zeros_like(v) for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other)

    def unbeatable_elsewhere(ckpt: dict) -> None:
        record = records(ckpt, monitored=True)[0]
        score = torch.tensor(-1e30)
        record.update(
            dirpath=str(other.parent),
            best_model_path=str(other),
            best_model_score=score,
            best_k_models={str(other): score},
            kth_best_model_path=str(other),
            kth_value=score,
        )

    path = crafted(tmp / "source", tmp_path / "download", unbeatable_elsewhere)

    # the old way: mixsep's callback, given the record, takes the other file as the run's best
    callback = BestCheckpoint(dirpath=str(tmp_path / "run" / "checkpoints"), monitor="val/loss", mode="min")
    callback.load_state_dict(records(torch.load(path, weights_only=True), monitored=True)[0])
    assert callback.best_model_path == str(other)

    metrics = train(
        compose_config("config", overrides + ["trainer.max_epochs=2", f"ckpt_path={path}"], tmp_path / "run")
    )
    own_best = Path(metrics["checkpoint"])
    assert own_best.parent == tmp_path / "run" / "checkpoints" and own_best.name.startswith("best")
    # its scores are its own best file's: scored again on its own
    argv = [
        "python",
        "-m",
        "mixsep.evaluate",
        f"ckpt_path={own_best}",
        *overrides[:-2],
        f"hydra.run.dir={tmp_path / 'ev'}",
    ]
    assert run_in_this_process(argv) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("test/mnist_psnr", "test/cifar_psnr"):
        assert metrics[key] == pytest.approx(again[key], abs=1e-4), key


def test_the_checkpoint_plugin_removes_only_the_runs_own_files(tmp_path):
    run, precious = tmp_path / "run", marker_folder(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    own = run / "checkpoints" / "best-epoch000.ckpt"
    own.write_bytes(b"x")
    io = AtomicCheckpointIO(run_folder=run)
    for foreign in (f"local://{precious}", str(precious), str(run / ".." / "precious"), str(run / "checkpoints")):
        io.remove_checkpoint(foreign)
    io.remove_checkpoint(str(own))
    assert (precious / "thesis.txt").exists() and (run / "checkpoints").is_dir() and not own.exists()
    with pytest.raises(CheckpointError, match="URL"):
        io.load_checkpoint(f"local://{own}")


def test_a_real_checkpoints_own_record_is_kept_whole(tiny):
    # resuming one's own run into a new folder keeps its best: paths in the checkpoint's folder stay
    tmp, _ = tiny
    source = tmp / "source" / "checkpoints" / "last.ckpt"
    written = records(torch.load(source, weights_only=True), monitored=True)[0]
    checked = records(AtomicCheckpointIO(run_folder=tmp / "new").load_checkpoint(source), monitored=True)[0]
    assert written["best_model_path"] and checked["best_model_path"] == written["best_model_path"]
    assert (
        checked["best_model_score"] == written["best_model_score"]
        and checked["best_k_models"].keys() == written["best_k_models"].keys()
    )


# Trainer state that Lightning hands to PyTorch objects as it is: the scheduler, the Timer, tensors, the restore itself


def plain_fit(cfg, tmp_path: Path, path: Path | None, **trainer) -> None:
    """Lightning alone (the old way): fit the tiny config's module, resumed from ``path``."""
    fit = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_train_batches=2,
        limit_val_batches=1,
        default_root_dir=tmp_path / "plain",
        **trainer,
    )
    fit.fit(build_module(cfg.model), datamodule=build(cfg.data), ckpt_path=path, weights_only=True)


def refused(path: Path, words: str) -> None:
    with pytest.raises(CheckpointError, match=re.escape(words)):
        AtomicCheckpointIO().load_checkpoint(path)


def test_a_scheduler_entry_named_like_its_method_replaces_it_under_lightning_but_not_under_mixsep(tiny, tmp_path):
    tmp, overrides = tiny
    path = crafted(tmp / "source", tmp_path / "download", lambda c: c["lr_schedulers"][0].update(step=3))
    cfg = compose_config("config", resume(overrides, path), tmp_path / "plain")
    with pytest.raises(TypeError, match="'int' object is not callable"):  # LambdaLR.load_state_dict: step = 3
        plain_fit(cfg, tmp_path, path)
    refused(path, "lr_schedulers is not a list, each a learning-rate schedule's state")
    for entry in ({"lr_lambdas": [5]}, {"__class__": 1}, {"optimizer": {}}, {"get_last_lr": 0}, {"base_lrs": ["x"]}):
        path = crafted(tmp / "source", tmp_path / "more", lambda c, e=entry: c["lr_schedulers"][0].update(e))
        refused(path, "lr_schedulers is not")
    AtomicCheckpointIO().load_checkpoint(tmp / "source" / "checkpoints" / "last.ckpt")  # its own: taken


def test_an_old_version_moves_an_unchecked_path_into_the_records_under_lightning_but_not_under_mixsep(tiny, tmp_path):
    tmp, _ = tiny

    def old(ckpt: dict) -> None:
        del ckpt["loops"]  # a file from before Lightning 1.6: its migration builds them
        ckpt["pytorch-lightning_version"] = "0.9.0"
        ckpt["checkpoint_callback_best_model_path"] = "/etc/passwd"

    path = crafted(tmp / "source", tmp_path / "download", old)
    # Lightning migrates the file it was handed, after the plugin returned it: the path lands in a record
    migrated, _ = migrate_checkpoint(torch.load(path, weights_only=True))
    assert migrated["callbacks"][ModelCheckpoint]["best_model_path"] == "/etc/passwd"
    refused(path, "its pytorch-lightning_version is not one from 2.0.0 on")


@pytest.mark.parametrize("seconds", ["x", -3600.0, 1e300, float("nan")])
def test_a_timer_record_moves_the_time_limit_under_lightning_but_not_under_mixsep(tiny, tmp_path, seconds):
    tmp, _ = tiny
    timer = Timer(duration=timedelta(minutes=5))
    timer.load_state_dict({"time_elapsed": {"train": seconds}})
    if isinstance(seconds, str):
        with pytest.raises(TypeError):  # what Lightning asks at every batch with trainer.max_time set
            timer.time_remaining()
    else:
        assert not 0 <= timer.time_remaining() <= 300  # the limit of 5 minutes moved (or gone: NaN)
    record = {"time_elapsed": {"train": seconds}}
    path = crafted(tmp / "source", tmp_path / "download", lambda c: c["callbacks"].update(Timer=record))
    refused(path, "callbacks[Timer].time_elapsed.train is not a time in seconds")


def test_a_real_timer_record_is_taken(tiny, tmp_path):
    tmp, _ = tiny
    timer = Timer(duration=timedelta(minutes=5))
    record = timer.state_dict()  # every stage Lightning writes
    assert set(record["time_elapsed"]) >= {"train", "validate", "test"}
    record["time_elapsed"]["train"] = 12.5
    path = crafted(tmp / "source", tmp_path / "download", lambda c: c["callbacks"].update(Timer=record))
    assert AtomicCheckpointIO().load_checkpoint(path)["callbacks"]["Timer"] == record


def test_levels_shared_by_reference_are_refused_at_once(tiny, tmp_path):
    tmp, _ = tiny

    def shared(ckpt: dict) -> None:
        level: list = []
        for _ in range(25):
            level = [level] * 5
        ckpt["callbacks"]["Foo"] = {"x": level}

    path = crafted(tmp / "source", tmp_path / "download", shared)
    assert path.stat().st_size < 2 * (tmp / "source" / "checkpoints" / "last.ckpt").stat().st_size  # a small file
    start = time.perf_counter()
    refused(path, "more than 1,000,000 entries")  # 5**25 to a walk that follows each reference
    assert time.perf_counter() - start < 10


def test_only_dense_cpu_tensors_are_trainer_state(tiny, tmp_path):
    tmp, _ = tiny
    weight = torch.ones(2, 2)
    assert dense_cpu_tensor(weight) and dense_cpu_tensor(torch.nn.Parameter(weight))
    quantized = torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)
    odd = [weight.to("meta"), weight.to_sparse(), weight.to_sparse_csr(), quantized]
    assert not any(dense_cpu_tensor(t) for t in odd)

    def meta_moment(ckpt: dict) -> None:
        state = next(iter(ckpt["optimizer_states"][0]["state"].values()))
        state["exp_avg"] = torch.empty_like(state["exp_avg"], device="meta")

    refused(crafted(tmp / "source", tmp_path / "a", meta_moment), "optimizer_states holds a meta tensor")

    def meta_score(ckpt: dict) -> None:
        records(ckpt, monitored=True)[0]["best_model_score"] = torch.tensor(1.0, device="meta")

    refused(crafted(tmp / "source", tmp_path / "b", meta_score), "callbacks holds a meta tensor")


def test_an_error_of_lightnings_restore_names_the_file_and_a_training_error_stays_itself(tiny, tmp_path, capfd):
    tmp, overrides = tiny
    # passes every check (plain entries), but names a second schedule the run has not: LambdaLR's restore fails
    path = crafted(
        tmp / "source", tmp_path / "download", lambda c: c["lr_schedulers"][0].update(lr_lambdas=[None, {"x": 1}])
    )
    AtomicCheckpointIO().load_checkpoint(path)
    cfg = compose_config("config", resume(overrides, path), tmp_path / "plain")
    with pytest.raises(IndexError):
        plain_fit(cfg, tmp_path, path)
    with pytest.raises(CheckpointError, match=f"ckpt_path={re.escape(str(path))} could not be restored .IndexError"):
        with restore_errors_named(str(path)):
            plain_fit(cfg, tmp_path, path)

    def training_fails(*args, **kwargs):
        raise ValueError("a training error")

    # the command: one line (after the config tree: Lightning restores the file inside trainer.fit)
    argv = ["python", "-m", "mixsep.run", *resume(overrides, path), f"hydra.run.dir={tmp_path / 'run'}"]
    capfd.readouterr()
    assert run_in_this_process(argv) != 0
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("mixsep: ")]
    assert len(lines) == 1 and "could not be restored (IndexError" in lines[0] and "ckpt_path=null" in lines[0]
    assert "Traceback" not in out + err

    own = tmp / "source" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="a training error"), restore_errors_named(str(own)):
        module = build_module(cfg.model)
        module.training_step = training_fails
        L.Trainer(
            max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False
        ).fit(module, datamodule=build(cfg.data), ckpt_path=own, weights_only=True)


@pytest.mark.parametrize("kind", ["huge", "words", "link", "pipe"])
def test_a_run_id_file_from_elsewhere_is_taken_only_as_a_short_id(tmp_path, kind, caplog):
    earlier, out = tmp_path / "download", tmp_path / "run"
    (earlier / "checkpoints").mkdir(parents=True)
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("abc123\n")  # an id-like secret: a link to it must not be followed
    kept = earlier / "wandb_id.txt"
    if kind == "huge":
        kept.write_text("a" * 10_000_000)
    elif kind == "words":
        kept.write_text("../../elsewhere\n")
    elif kind == "link":
        kept.symlink_to(secret)
    else:
        os.mkfifo(kept)  # the old read never returns
    looked_at: list[str] = []
    recording = [True]
    sys.addaudithook(lambda event, args: looked_at.append(str(args[0])) if recording and event == "open" else None)
    try:
        found = kept_run_id(out, str(earlier / "checkpoints" / "last.ckpt"), "wandb_id.txt")
    finally:
        recording.clear()
    assert found is None and "wandb_id.txt" in caplog.text
    assert not any("secret" in p for p in looked_at)
    kept.unlink()
    kept.write_text("run-7_x\n")  # a real id: the resume continues its run
    assert kept_run_id(out, str(earlier / "checkpoints" / "last.ckpt"), "wandb_id.txt") == "run-7_x"


def test_a_resume_continues_the_wandb_run_only_of_a_real_id(tiny, tmp_path, monkeypatch):
    tmp, _ = tiny
    monkeypatch.setenv("WANDB_MODE", "offline")
    earlier = tmp_path / "download"
    path = crafted(tmp / "source", earlier / "checkpoints", lambda c: None)
    (earlier / "wandb_id.txt").write_text("x" * 65 + "\n")
    out, node = (
        tmp_path / "run",
        {"_target_": "mixsep.training.loggers.WandbLogger", "id": None, "save_dir": str(tmp_path)},
    )
    out.mkdir()
    try:
        (logger,) = build_loggers(OmegaConf.create({"wandb": node}), out, "exp", str(path))
        assert logger.version != "x" * 65 and (out / "wandb_id.txt").read_text() == logger.version + "\n"
    finally:
        finish_wandb(failed=False)
