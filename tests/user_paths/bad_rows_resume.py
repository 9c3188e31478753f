"""Bad-input rows: a resumed checkpoint whose trainer state is not what mixsep.run writes. Each file is crafted from
a real one (a tiny run trained once per test session), copied under the row's temporary folder."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from tests.helpers import TINY_SIZES

RUN = ["python", "-m", "mixsep.run"]


def _real_run() -> Path:
    """A tiny run's folder, trained on the first call of this test session (the rows' data: MIXSEP_DATA_ROOT), in
    its own process: its output is not the row's."""
    folder = Path(tempfile.gettempdir()) / f"mixsep-bad-rows-resume-{os.getpid()}"
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        overrides = [*TINY_SIZES, "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=none"]
        command = [sys.executable, *RUN[1:], *overrides, "callbacks.progress_bar.refresh_rate=0"]
        atexit.register(shutil.rmtree, folder, True)
        subprocess.run([*command, f"hydra.run.dir={folder}"], capture_output=True, check=True, timeout=600)
    return folder


def _crafted(t: Path, change: Callable[[dict], None]) -> Path:
    """The real run's last.ckpt, changed by ``change``, as ``<t>/download/last.ckpt``."""
    ckpt = torch.load(_real_run() / "checkpoints" / "last.ckpt", weights_only=True)
    change(ckpt)
    path = t / "download" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _deep_enough():
        torch.save(ckpt, path)
    return path


@contextlib.contextmanager
def _deep_enough():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickling a deeply nested list recurses
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _nested(depth: int) -> list:
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def _loops_malformed(ckpt: dict) -> None:
    ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["ready"] = "many"


def _optimizer_malformed(ckpt: dict) -> None:
    ckpt["optimizer_states"][0]["param_groups"] = "adam"


def _optimizer_of_another_network(ckpt: dict) -> None:
    ckpt["optimizer_states"][0]["param_groups"][0]["params"].pop()


def _datamodule_malformed(ckpt: dict) -> None:
    ckpt["MixDataModule"] = {"train_position": {"epoch": "zero", "batches": 0}}


def _weight_of_another_shape(ckpt: dict) -> None:
    name, weight = next(iter(ckpt["state_dict"].items()))
    ckpt["state_dict"][name] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])


def _nested_lists(ckpt: dict) -> None:
    ckpt["callbacks"]["SamplesAndCurves"]["history"]["train"] = _nested(5000)


def _resume(change: Callable[[dict], None], *settings: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, r: RUN + [f"ckpt_path={_crafted(t, change)}", *settings]


def _unchanged(ckpt: dict) -> None:
    pass


ROWS = [
    ("run-resume-loops-malformed", _resume(_loops_malformed), "loops.fit_loop.epoch_progress.total is not"),
    ("run-resume-optimizer-malformed", _resume(_optimizer_malformed), "optimizer_states is not a list"),
    ("run-resume-optimizer-other-net", _resume(_optimizer_of_another_network), "an optimizer state for"),
    ("run-resume-datamodule-malformed", _resume(_datamodule_malformed), "MixDataModule.train_position.epoch is not"),
    ("run-resume-weight-other-shape", _resume(_weight_of_another_shape), "do not fit the networks"),
    (  # a whole checkpoint, resumed with other network settings than its own
        "run-resume-other-widths",
        _resume(_unchanged, "model.net.widths=[16,32,64,128]"),
        "does not fit the model this run builds (state_dict: net.",
    ),
    ("run-resume-nested-lists", _resume(_nested_lists), "more than 32 levels deep"),
]
