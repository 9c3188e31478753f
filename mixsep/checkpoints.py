"""Which checkpoint a run resumes from (and whether it can), and which ones it wrote (best and last)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from mixsep.errors import CheckpointError, ConfigError


def resolve_ckpt_path(cfg: DictConfig, out: Path) -> str | None:
    """``auto``: resume from this run folder's last.ckpt when there is one (a re-queued or re-run job)."""
    ckpt = cfg.get("ckpt_path")
    if ckpt == "auto":
        last = out / "checkpoints" / "last.ckpt"
        if not last.is_file():
            return None
        check_resumable(last, cfg.model)
        return str(last)
    if ckpt and not Path(str(ckpt)).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt} does not exist. Pass a .ckpt written by mixsep.run "
            "(<run dir>/checkpoints/last.ckpt), ckpt_path=auto or ckpt_path=null."
        )
    if ckpt:
        check_resumable(Path(str(ckpt)), cfg.model)
    return ckpt or None


def check_resumable(path: Path, model_cfg: DictConfig | None = None) -> None:
    """A checkpoint to resume from must be a whole training checkpoint that mixsep.run wrote."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:
        raise CheckpointError(
            f"ckpt_path={path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "it may be truncated. Pass a .ckpt that mixsep.run wrote (<run dir>/checkpoints/last.ckpt), or "
            "ckpt_path=null to start afresh."
        ) from err
    missing = [k for k in ("state_dict", "optimizer_states", "loops") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(
            f"ckpt_path={path} holds no training state to resume ({', '.join(missing)} missing): a slim export "
            "or another program's file. Resume from <run dir>/checkpoints/last.ckpt; score a model with "
            "mixsep.evaluate ckpt_path=..."
        )
    trained = (ckpt.get("hyper_parameters") or {}).get("net") or {}
    wanted = (model_cfg or {}).get("net") or {}
    if model_cfg is not None and trained.get("_target_") and trained.get("_target_") != wanted.get("_target_"):
        name = (ckpt.get("hyper_parameters") or {}).get("name", "?")
        raise CheckpointError(
            f"ckpt_path={path} holds a {name} model ({trained['_target_']}), but this run builds "
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
