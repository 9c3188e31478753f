"""A resumed checkpoint's trainer state is data: the paths in its checkpoint records are kept only inside the new
run's folder or the checkpoint's own (never a URL), its scores only when finite; what is left out is said, and
nothing outside those two folders is deleted, read or tested."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mixsep.errors import CheckpointError
from mixsep.run import train
from mixsep.training.build import build, build_module
from mixsep.training.callbacks import BestCheckpoint
from mixsep.training.checkpoints import AtomicCheckpointIO, inside
from tests.helpers import TINY_SIZES, compose_config, make_cifar_folder, make_mnist, run_in_this_process


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list[str]]:
    """Tiny data and its overrides, and one real run of it (``<tmp>/source``) whose checkpoints are crafted."""
    tmp = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    make_mnist(tmp / "data", 40, 12, rng)
    make_cifar_folder(tmp / "data", 40, 12, rng)
    overrides = [
        f"data.root={tmp / 'data'}",
        f"data.cache_dir={tmp / 'cache'}",
        *TINY_SIZES,
        "trainer.accelerator=cpu",
        "logger=none",
        "callbacks.progress_bar.refresh_rate=0",
    ]
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
