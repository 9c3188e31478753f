"""How checkpoints are written (whole or not at all), which one a run resumes from (and whether it can), and
which ones it wrote (best and last)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig

from mixsep.errors import CheckpointError, ConfigError
from mixsep.files import write_atomically

log = logging.getLogger("mixsep")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that a reader only ever sees whole, flushed to disk (``files.write_atomically``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # in memory first: a full disk then fails as an OSError (ENOSPC) that says so
    write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()), durable=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO plugin for every checkpoint the Trainer writes (last, best, the save at a
    scheduler's signal): whole files only (``atomic_torch_save``). Lightning's own ``_atomic_save`` stages the
    file in the system's temporary folder, so the final move is a copy wherever that is another file system,
    and never flushes it to disk."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        atomic_torch_save(checkpoint, path)


def resolve_ckpt_path(ckpt: str | None, model_cfg: DictConfig, out: Path) -> str | None:
    """``auto``: resume from this run folder's newest checkpoint that loads (a re-queued or re-run job):
    last.ckpt, else the newest best-*.ckpt; says which one and why in one line."""
    if ckpt == "auto":
        return newest_resumable(out / "checkpoints", model_cfg)
    if ckpt and Path(str(ckpt)).is_dir():
        raise ConfigError(
            f"ckpt_path={ckpt} is a folder (a model bundle holds weights only): a run resumes from a training "
            "checkpoint, <run dir>/checkpoints/last.ckpt; score a bundle with mixsep.evaluate ckpt_path=..."
        )
    if ckpt and not Path(str(ckpt)).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt} does not exist. Pass a .ckpt written by mixsep.run "
            "(<run dir>/checkpoints/last.ckpt), ckpt_path=auto or ckpt_path=null."
        )
    if ckpt:
        check_resumable(Path(str(ckpt)), model_cfg)
    return ckpt or None


def newest_resumable(folder: Path, model_cfg: DictConfig | None = None) -> str | None:
    """The checkpoint in ``folder`` to resume from: last.ckpt when it loads, else the newest best-*.ckpt that
    does (a torn last.ckpt does not block the resume). None when the folder holds no checkpoint."""
    last = folder / "last.ckpt"
    best = sorted(folder.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    candidates = ([last] if last.is_file() else []) + best
    refused: list[str] = []
    for path in candidates:
        try:
            check_resumable(path, model_cfg)
        except CheckpointError as err:
            if "holds a" in str(err):  # another model's checkpoint: not a torn file, a different run
                raise
            refused.append(f"{path.name} ({str(err).split('(', 1)[-1].split(')')[0]})")
            continue
        why = "the last checkpoint" if path == last else f"the newest best checkpoint, as {'; '.join(refused)}"
        log.info(f"resuming from {path} ({why})")
        return str(path)
    if refused:
        raise CheckpointError(
            f"no checkpoint in {folder} loads: {'; '.join(refused)}. Resume from a copy of a whole one "
            "(ckpt_path=PATH), or start afresh with ckpt_path=null"
        )
    return None


def check_resumable(path: Path, model_cfg: DictConfig | None = None) -> None:
    """A checkpoint to resume from must be a whole training checkpoint that mixsep.run wrote, read as data only
    (its network one of mixsep's, with plain settings)."""
    from mixsep.models.saved import checkpoint_model, read_checkpoint

    ckpt = read_checkpoint(path)
    missing = [k for k in ("state_dict", "optimizer_states", "loops") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"ckpt_path={path} holds no training state to resume ({', '.join(missing)} missing): a slim export "
            "or another program's file. Resume from <run dir>/checkpoints/last.ckpt; score a model with "
            "mixsep.evaluate ckpt_path=..."
        )
    saved = checkpoint_model(path, ckpt)
    wanted = (model_cfg or {}).get("net") or {}
    if model_cfg is not None and saved.architecture != str(wanted.get("_target_", "")).rpartition(".")[2]:
        name = saved.settings.get("name", "?")
        raise CheckpointError(
            f"ckpt_path={path} holds a {name} model ({saved.net_config['_target_']}), but this run builds "
            f"model={model_cfg.get('name')}: add model={name} (and the other settings of its run) to resume it"
        )


def checkpoint_paths(trainer: L.Trainer) -> tuple[str, str]:
    """The best checkpoint (of the monitoring ModelCheckpoint) and the last one (``last.ckpt``, written by a
    ModelCheckpoint without a monitor), each "" where none was written."""
    written = [c for c in trainer.checkpoint_callbacks if c.best_model_path]
    best = next((c.best_model_path for c in written if c.monitor), "")
    last = next((c.best_model_path for c in written if not c.monitor), "")
    # a config that brings back save_last on the monitoring callback instead
    return best, last or next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), "")


def export_checkpoint(src: str | Path, dst: str | Path, precision: str | None = None) -> Path:
    """A slim copy: weights and hyper-parameters only (no optimizer state). To share a model, export a bundle
    instead (``python -m mixsep.export``: safetensors, a config and a model card)."""
    from mixsep.models.saved import read_checkpoint
    from mixsep.models.separator import load_module

    saved = load_module(src).mixsep_saved  # a clear CheckpointError unless src is a mixsep checkpoint
    ckpt = read_checkpoint(src)
    slim = {key: ckpt[key] for key in ("state_dict", "hyper_parameters", "pytorch-lightning_version") if key in ckpt}
    slim["mixsep_precision"] = precision or saved.precision
    slim["mixsep_sources"] = saved.sources
    dst = Path(dst)
    atomic_torch_save(slim, dst)
    return dst
