"""How checkpoints are written (whole or not at all), which one a run resumes from (and whether it can), and
which ones it wrote (best and last)."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.trainer.states import RunningStage
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
    and never flushes it to disk.

    It is also how the Trainer reads one (the resumed checkpoint, then the best one it tests): as data
    (``read_checkpoint``), its trainer state checked by ``checked_trainer_state`` before Lightning sees it, and
    it removes only files inside ``run_folder`` (``build.build_trainer`` gives it the run's folder)."""

    def __init__(self, run_folder: str | Path | None = None) -> None:
        super().__init__()
        self.run_folder = Path(run_folder) if run_folder else None
        self.read_from: list[Path] = []  # the resumed checkpoint's folder: later records (the best's) may name it

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from mixsep.models.saved import read_checkpoint

        if is_url(path):
            raise CheckpointError(f"ckpt_path={path} is a URL: mixsep reads checkpoints from this disk only")
        allowed = [*self.read_from, *([self.run_folder] if self.run_folder else [])]
        ckpt = checked_trainer_state(read_checkpoint(path), Path(path), allowed)
        self.read_from.append(Path(path).parent)
        return ckpt

    def remove_checkpoint(self, path) -> None:
        # Lightning removes what a ModelCheckpoint's record names (recursively, through fsspec): only ever
        # this run's own files, whatever a resumed record said
        if self.run_folder is None or not inside(str(path), [self.run_folder]):
            log.warning(f"not removing {path}: it is not in this run's folder")
            return
        if Path(path).is_file():  # a file only: never a folder, never recursively
            Path(path).unlink()


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


# A resumed checkpoint's trainer state is data from elsewhere: before Lightning sees it, its paths are kept only
# inside this run's folder or the checkpoint's own (never a URL), its scores only when finite, and every other part
# Lightning reads must have the shape a mixsep run writes.

TRACKER_FIELDS = ("ready", "started", "processed", "completed")
CHECKPOINT_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")
OLDEST_LIGHTNING = "2.0.0"  # Lightning migrates older checkpoints, moving their entries after they are checked
PLAIN_DEPTH = 4
DEEPEST = 32  # mixsep's own checkpoints nest 8 levels; Lightning copies callback state recursively
MOST_ENTRIES = 1_000_000  # a tiny run's checkpoint holds a few thousand; a shared list counts each time it is reached
LONGEST_SECONDS = 10 * 365 * 24 * 3600  # a Timer's elapsed time: more than ten years is no real run's


class Maybe(NamedTuple):
    """An entry a shape allows to be missing (Lightning reads it with ``.get`` or skips it)."""

    shape: Any


def is_url(path: Any) -> bool:
    """A URL or an fsspec chain (``local://``, ``file://``, ``s3://``, ``simplecache::...``): never followed."""
    return "://" in str(path) or "::" in str(path)


def inside(path: Any, folders: list[Path]) -> bool:
    """``path`` lies inside one of ``folders`` as written and once symbolic links and ``..`` are resolved; a URL
    never does. It is compared as written first, so nothing outside ``folders`` is ever looked at."""
    if not isinstance(path, str) or not path or is_url(path) or "\0" in path:
        return False
    written = Path(os.path.normpath(os.path.abspath(path)))
    real_folders = [Path(os.path.realpath(f)) for f in folders]
    written_folders = [Path(os.path.normpath(os.path.abspath(f))) for f in folders] + real_folders
    if not any(written.is_relative_to(f) for f in written_folders):
        return False
    return any(Path(os.path.realpath(written)).is_relative_to(f) for f in real_folders)


def count(value: Any) -> bool:
    """a whole number >= 0"""
    return type(value) is int and value >= 0


def flag(value: Any) -> bool:
    """true or false"""
    return type(value) is bool


def tracker(value: Any) -> bool:
    """a progress counter (ready, started, processed, completed: whole numbers >= 0)"""
    return isinstance(value, dict) and all(k in TRACKER_FIELDS and count(v) for k, v in value.items())


def dense_cpu_tensor(value: Any) -> bool:
    """a dense tensor in CPU memory (what torch.save writes of a trained network; a meta, sparse or quantized
    tensor holds no numbers to train on)"""
    return (
        isinstance(value, torch.Tensor)
        and value.layout == torch.strided
        and value.device.type == "cpu"
        and not value.is_quantized
    )


def finite_number(value: Any) -> bool:
    """a finite number"""
    if isinstance(value, torch.Tensor):
        return (
            dense_cpu_tensor(value)
            and value.numel() == 1
            and value.dtype.is_floating_point
            and bool(torch.isfinite(value).all())
        )
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_or_infinity(value: Any) -> bool:
    """a number (infinite before the first score)"""
    return dense_cpu_tensor(value) and value.numel() == 1 and not bool(torch.isnan(value).any())


def plain(value: Any, depth: int = PLAIN_DEPTH) -> bool:
    """plain settings (numbers, words, flags, short lists and mappings of them)"""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth and isinstance(value, (list, tuple)):
        return all(plain(v, depth - 1) for v in value)
    if depth and isinstance(value, dict):
        return all(isinstance(k, str) and plain(v, depth - 1) for k, v in value.items())
    return False


def weights(value: Any) -> bool:
    """a mapping of names to dense CPU tensors"""
    return isinstance(value, dict) and all(isinstance(k, str) and dense_cpu_tensor(v) for k, v in value.items())


def loader_states(value: Any) -> bool:
    """the training loader's position (a list of {epoch, batches})"""
    return isinstance(value, list) and all(
        isinstance(s, dict) and all(isinstance(k, str) and count(v) for k, v in s.items()) for s in value
    )


def optimizer_state(value: Any) -> bool:
    """an optimizer's state"""
    if not isinstance(value, dict) or set(value) != {"state", "param_groups"}:
        return False
    state, groups = value["state"], value["param_groups"]
    per_param = isinstance(state, dict) and all(
        count(k) and isinstance(s, dict) and all(dense_cpu_tensor(v) or finite_number(v) for v in s.values())
        for k, s in state.items()
    )
    return (
        per_param
        and isinstance(groups, list)
        and all(
            isinstance(g, dict)
            and isinstance(g.get("params"), list)
            and all(count(i) for i in g["params"])
            and all(plain(v, 1) for k, v in g.items() if k != "params")
            for g in groups
        )
    )


def scheduler_methods() -> set[str]:
    """The names of what a learning-rate schedule calls on itself (its methods, whichever of PyTorch's schedules it
    is): a scheduler's ``load_state_dict`` copies every entry of its state onto the object, so an entry of such a
    name would replace the method."""
    from torch.optim import lr_scheduler

    kinds = [k for k in vars(lr_scheduler).values() if isinstance(k, type) and hasattr(k, "load_state_dict")]
    return {name for kind in kinds for name in dir(kind) if callable(getattr(kind, name, None))}


def scheduler_entry(key: Any, value: Any, methods: set[str]) -> bool:
    if not isinstance(key, str) or key.startswith(("__", "optimizer")) or key in methods:
        return False
    if key in ("base_lrs", "_last_lr"):
        return isinstance(value, list) and all(finite_number(x) for x in value)
    if key in ("last_epoch", "_step_count"):
        return type(value) is int
    if key == "lr_lambdas":  # LambdaLR's: None for a plain function, else the attributes of a callable object
        return isinstance(value, list) and all(
            v is None or (isinstance(v, dict) and all(not k.startswith("__") for k in v)) for v in value
        )
    return plain(value)


def scheduler_state(value: Any) -> bool:
    """a learning-rate schedule's state (plain numbers and words, under names that are none of its methods)"""
    if not isinstance(value, dict) or not plain(value):
        return False
    methods = scheduler_methods()
    return all(scheduler_entry(k, v, methods) for k, v in value.items())


def scaler_state(value: Any) -> bool:
    """a gradient scaler's state (names to finite numbers)"""
    return isinstance(value, dict) and all(isinstance(k, str) and finite_number(v) for k, v in value.items())


def elapsed_seconds(value: Any) -> bool:
    """a time in seconds (a finite number from 0 to ten years)"""
    return type(value) in (int, float) and math.isfinite(value) and 0 <= value <= LONGEST_SECONDS


def lightning_version(value: Any) -> bool:
    """a Lightning version from 2.0.0 on (OLDEST_LIGHTNING)"""
    from packaging.version import InvalidVersion, Version

    try:
        return isinstance(value, str) and Version(value) >= Version(OLDEST_LIGHTNING)
    except InvalidVersion:
        return False


def listed(shape: Any) -> Any:
    def each(value: Any) -> bool:
        return isinstance(value, list) and all(shape(v) for v in value)

    each.__doc__ = f"a list, each {shape.__doc__}"  # e.g. "a list, each an optimizer's state"
    return each


PROGRESS = {"total": tracker, "current": tracker}
BATCH_PROGRESS = {**PROGRESS, "is_last_batch": flag}
EVALUATION_LOOP = {"state_dict": Maybe({}), "batch_progress": Maybe(BATCH_PROGRESS)}
FIT_LOOP = {
    "state_dict": Maybe({"combined_loader": Maybe(loader_states)}),
    "epoch_loop.state_dict": Maybe({"_batches_that_stepped": Maybe(count)}),
    "epoch_loop.batch_progress": Maybe(BATCH_PROGRESS),
    "epoch_loop.scheduler_progress": Maybe(PROGRESS),
    "epoch_loop.automatic_optimization.state_dict": Maybe({}),
    "epoch_loop.automatic_optimization.optim_progress": Maybe({"optimizer": {"step": PROGRESS, "zero_grad": PROGRESS}}),
    "epoch_loop.manual_optimization.state_dict": Maybe({}),
    "epoch_loop.manual_optimization.optim_step_progress": Maybe(PROGRESS),
    "epoch_loop.val_loop.state_dict": Maybe({}),
    "epoch_loop.val_loop.batch_progress": Maybe(BATCH_PROGRESS),
    "epoch_progress": Maybe(PROGRESS),
}
# every part of a checkpoint that Lightning (or mixsep's data module) reads when it restores a run
TRAINER_STATE = {
    "pytorch-lightning_version": lightning_version,
    "epoch": Maybe(count),
    "global_step": Maybe(count),
    "state_dict": weights,
    "current_model_state": Maybe(weights),  # EMAWeightAveraging's
    "averaging_state": Maybe(weights),
    "loops": Maybe(
        {
            "fit_loop": FIT_LOOP,
            "validate_loop": EVALUATION_LOOP,
            "test_loop": EVALUATION_LOOP,
            "predict_loop": {"state_dict": Maybe({}), "batch_progress": Maybe(PROGRESS)},
        }
    ),
    "optimizer_states": Maybe(listed(optimizer_state)),
    "lr_schedulers": Maybe(listed(scheduler_state)),
    "MixDataModule": Maybe({"train_position": Maybe({"epoch": count, "batches": count})}),
    "MixedPrecision": Maybe(scaler_state),
    "native_amp_scaling_state": Maybe(scaler_state),
}
CALLBACK_STATE = {  # by the start of their state key
    "EarlyStopping": {
        "wait_count": count,
        "stopped_epoch": count,
        "best_score": score_or_infinity,
        "patience": count,
        "stopping_reason": Maybe(lambda v: v in {r.value for r in EarlyStoppingReason}),
        "stopping_reason_message": Maybe(lambda v: v is None or isinstance(v, str)),
    },
    "EMAWeightAveraging": {"latest_update_step": count},
    # trainer.max_time: the time already spent counts against it (and the onecycle_time schedule's curve)
    "Timer": {"time_elapsed": Maybe({stage.value: Maybe(elapsed_seconds) for stage in RunningStage})},
}


def shape_problem(value: Any, shape: Any, where: str) -> str | None:
    """Where ``value`` departs from ``shape`` (a predicate, or a mapping of entry names to shapes, ``Maybe`` for
    an entry that may be missing; no other entries), as a few words; None when it fits."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is a {type(value).__name__}, not a mapping"
        unknown = next((key for key in value if key not in shape), None)
        if unknown is not None:
            return f"{where} has an entry {str(unknown)[:60]!r} that mixsep.run never writes"
        for key, inner in shape.items():
            if key in value:
                problem = shape_problem(value[key], unwrapped(inner), f"{where}.{key}")
                if problem:
                    return problem
            elif not isinstance(inner, Maybe):
                return f"{where} lacks {key!r}"
        return None
    if shape(value):
        return None
    return f"{where} is not {shape.__doc__ or 'what mixsep.run writes'}"


def walk_problem(ckpt: dict, deepest: int = DEEPEST, most: int = MOST_ENTRIES) -> str | None:
    """Whether lists, tuples and mappings (keys too) in ``ckpt`` nest more than ``deepest`` levels, hold more than
    ``most`` entries in all (a list shared by many others counts each time it is reached: unpickled, it is that
    big to whatever walks it), or hold a tensor that is not a dense CPU one. Looked at without recursion and
    stopped at ``most``, so any file is answered at once."""
    seen = 0
    for top, value in ckpt.items():
        pending = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, torch.Tensor) and not dense_cpu_tensor(item):
                return f"{str(top)[:40]} holds a {tensor_kind(item)} tensor, not a dense CPU one as mixsep.run writes"
            if isinstance(item, dict):
                item = [*item.keys(), *item.values()]
            if not isinstance(item, (list, tuple)):
                continue
            if depth >= deepest:
                return f"it nests lists or mappings more than {deepest} levels deep"
            seen += len(item)
            if seen > most:
                return f"it holds more than {most:,} entries in its lists and mappings"
            pending.extend((inner, depth + 1) for inner in item)
    return None


def tensor_kind(tensor: torch.Tensor) -> str:
    if tensor.is_quantized:
        return "quantized"
    layout = "" if tensor.layout == torch.strided else str(tensor.layout).removeprefix("torch.") + " "
    return f"{layout}{tensor.device.type}"


def unwrapped(shape: Any) -> Any:
    return shape.shape if isinstance(shape, Maybe) else shape


def trainer_state_problem(ckpt: dict) -> str | None:
    """The first part of ``ckpt`` that Lightning reads and that departs from what a mixsep run writes."""
    problem = walk_problem(ckpt)
    if problem:
        return problem
    for key, shape in TRAINER_STATE.items():
        if key not in ckpt and not isinstance(shape, Maybe):
            return f"it lacks {key!r}"
        problem = shape_problem(ckpt[key], unwrapped(shape), key) if key in ckpt else None
        if problem:
            return problem
    callbacks = ckpt.get("callbacks", {})
    if not isinstance(callbacks, dict):
        return f"callbacks is a {type(callbacks).__name__}, not a mapping"
    for key, state in callbacks.items():
        where = f"callbacks[{str(key)[:40]}]"
        if not isinstance(state, dict):
            return f"{where} is a {type(state).__name__}, not a mapping"
        shape = next((s for name, s in CALLBACK_STATE.items() if str(key).startswith(name)), None)
        problem = shape_problem(state, shape, where) if shape else None
        if problem:
            return problem
    return None


def checked_trainer_state(ckpt: dict, path: Path, folders: tuple | list[Path] = (), quiet: bool = False) -> dict:
    """``ckpt`` (read from ``path`` as data) as Lightning may restore it: every part it reads has the shape a
    mixsep run writes, else one ``CheckpointError``; in callback state, only paths inside ``folders`` (the run's) or
    ``path``'s folder and finite scores are kept (the rest is left out with a note)."""
    problem = trainer_state_problem(ckpt)
    if problem:
        raise CheckpointError(
            f"ckpt_path={path} is not a training checkpoint that mixsep.run wrote ({problem}): resume from a "
            "last.ckpt that mixsep.run wrote, or start afresh with ckpt_path=null"
        )
    folders = [path.parent, *folders]
    left_out: list[str] = []
    ckpt["callbacks"] = {
        key: checked_checkpoint_record(state, folders, left_out) if str(key).startswith("ModelCheckpoint") else state
        for key, state in ckpt.get("callbacks", {}).items()
    }
    if left_out and not quiet:
        log.warning(
            f"{path}: left out of its checkpoint record, as outside this run's folder and the checkpoint's own "
            f"(or not a finite score): {'; '.join(left_out)}"
        )
    return ckpt


def checked_checkpoint_record(record: dict, folders: list[Path], left_out: list[str]) -> dict:
    """A ModelCheckpoint's saved record with every path outside ``folders`` (or a URL) and every score that
    is not a finite number left out (a left-out path takes its score with it); its folder, when outside,
    becomes the checkpoint's own (``folders[0]``)."""
    record = dict(record)

    def drop(key: str, reason: str = "") -> None:
        left_out.append(f"{key}={str(record.get(key))[:120]!r}{reason}")

    def checkpoint_file(value: Any) -> bool:
        return value == "" or (inside(value, folders) and str(value).endswith(".ckpt"))

    if "dirpath" in record and not inside(record["dirpath"], folders):
        drop("dirpath")
        record["dirpath"] = str(folders[0])
    for key in CHECKPOINT_PATH_KEYS:
        if key in record and not checkpoint_file(record[key]):
            drop(key)
            record[key] = ""
    if not record.get("kth_best_model_path"):
        record.pop("kth_value", None)  # no k-th file, no k-th score: the callback keeps its own starting value
    for key in ("best_model_score", "current_score", "kth_value"):
        if record.get(key) is not None and not finite_number(record[key]):
            drop(key, " (not a finite number)")
            record[key] = None
    if not record.get("best_model_path"):
        record["best_model_score"] = None
    if record.get("kth_value", 0) is None:
        record.pop("kth_value")
        record["kth_best_model_path"] = ""
    best_k = record.get("best_k_models", {})
    if not isinstance(best_k, dict):
        drop("best_k_models")
        best_k = {}
    kept = {p: s for p, s in best_k.items() if p != "" and checkpoint_file(p) and finite_number(s)}
    left_out.extend(f"best_k_models[{str(p)[:120]!r}]" for p in best_k if p not in kept)
    if "best_k_models" in record:
        record["best_k_models"] = kept
    return record


def check_resume_fits(path: str | None, module: L.LightningModule, run_folder: Path | None = None) -> None:
    """The checkpoint a run resumes from, before Lightning restores it: its trainer state as
    ``checked_trainer_state`` wants it, its weights (and the EMA's) of the names and shapes of ``module``'s, its
    optimizer state for ``module``'s parameters (mixsep builds one optimizer over all of them)."""
    if not path:
        return
    from mixsep.models.saved import read_checkpoint

    folders = [run_folder] if run_folder else []
    ckpt = checked_trainer_state(read_checkpoint(path), Path(path), folders, quiet=True)  # said at the restore
    wanted = module.state_dict()
    ema = ckpt.get("current_model_state")  # EMAWeightAveraging: the trained weights beside the averaged ones
    problem = weights_problem(ckpt["state_dict"], wanted, "state_dict")
    problem = problem or (weights_problem(ema, wanted, "current_model_state") if ema is not None else None)
    problem = problem or optimizer_problem(ckpt.get("optimizer_states", []), list(module.parameters()))
    if problem:
        raise CheckpointError(
            f"ckpt_path={path} does not fit the model this run builds ({problem}): resume it with the settings of "
            "its own run (config_tree.txt in its folder), or start afresh with ckpt_path=null"
        )


RESTORING = ("resume_start", "restore", "_restore")  # Lightning's checkpoint connector reading a checkpoint back


@contextlib.contextmanager
def restore_errors_named(path: str | None) -> Iterator[None]:
    """Around ``trainer.fit(ckpt_path=path)``: an error raised while Lightning restores ``path`` (in its checkpoint
    connector, before training starts) is one ``CheckpointError`` naming the file; the checks above take what
    mixsep.run writes, and a file that passes them and still does not restore is not one to resume. Errors of
    training itself (and of writing a checkpoint) pass through as they are."""
    try:
        yield
    except Exception as err:
        if not path or isinstance(err, CheckpointError) or not raised_while_restoring(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"ckpt_path={path} could not be restored ({type(err).__name__}: {first[:160]}): resume from a last.ckpt "
            "that mixsep.run wrote, or start afresh with ckpt_path=null"
        ) from err


def raised_while_restoring(err: BaseException) -> bool:
    return any(
        Path(frame.f_code.co_filename).match("*/connectors/checkpoint_connector.py")
        and frame.f_code.co_name.startswith(RESTORING)
        for frame, _ in traceback.walk_tb(err.__traceback__)
    )


def weights_problem(found: dict, wanted: dict, where: str) -> str | None:
    missing = next((name for name in wanted if name not in found), None)
    if missing is not None:
        return f"{where} lacks {missing}"
    extra = next((name for name in found if name not in wanted), None)
    if extra is not None:
        return f"{where} has {extra[:80]}, which this model has not"
    for name, tensor in found.items():
        if tensor.shape != wanted[name].shape:
            shapes = f"{tuple(tensor.shape)} in the file, {tuple(wanted[name].shape)} here"
            return f"{where}: {name} is {shapes}"
    return None


def optimizer_problem(states: list, parameters: list[torch.nn.Parameter]) -> str | None:
    if not states:
        return None
    if len(states) != 1:
        return f"{len(states)} optimizer states; a mixsep run has one optimizer"
    indices = [i for group in states[0]["param_groups"] for i in group["params"]]
    if sorted(indices) != list(range(len(parameters))):
        return f"an optimizer state for {len(indices)} parameters; this model has {len(parameters)}"
    for index, state in states[0]["state"].items():
        if index >= len(parameters):
            return f"optimizer state for parameter {index}; this model has {len(parameters)}"
        shape = parameters[index].shape
        for name, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() and not broadcasts_to(value.shape, shape):
                return f"optimizer state {name} of parameter {index} is {tuple(value.shape)}, not {tuple(shape)}"
    return None


def broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Per-parameter optimizer state is the parameter's shape, or factored along it (Adafactor)."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False
