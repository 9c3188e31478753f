"""Checkpoints: written whole or not at all, which one a run resumes from (and whether it can), the best and last
it wrote; a resumed checkpoint's trainer state read as data and checked before Lightning restores it."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import traceback
from collections.abc import Iterator
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
    """Lightning's CheckpointIO plugin: every checkpoint written whole (Lightning's ``_atomic_save`` stages it in the
    system's temporary folder, another file system's copy, never flushed); every one read as data, its trainer state
    checked (``checked_trainer_state``); only files inside ``run_folder`` removed (``build.build_trainer`` sets it)."""

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
        # Lightning removes what a ModelCheckpoint's record names (recursively): only this run's own files
        if self.run_folder is None or not inside(str(path), [self.run_folder]):
            log.warning(f"not removing {path}: it is not in this run's folder")
        elif Path(path).is_file():  # a file only: never a folder, never recursively
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
    from mixsep.models.registry import NAME_KEY
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
    if model_cfg is not None and saved.architecture != str(wanted.get(NAME_KEY, "")).rpartition(".")[2]:
        name = saved.settings.get("name", "?")
        raise CheckpointError(
            f"ckpt_path={path} holds a {name} model ({saved.architecture}), but this run builds "
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
    """A slim copy (weights and hyper-parameters, no optimizer state); to share a model, export a bundle."""
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


# A resumed checkpoint's trainer state is data from elsewhere. Lightning's restore raises on most malformed parts
# (``restore_errors_named`` says it in one line); checked before Lightning sees it is what it would take silently.

CHECKPOINT_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")  # besides best_k_models
OLDEST_LIGHTNING = "2.0.0"  # Lightning migrates older checkpoints, moving their entries after they are checked
DEEPEST = 32  # mixsep's own checkpoints nest 8 levels; Lightning copies callback state recursively
MOST_ENTRIES = 1_000_000  # a tiny run's checkpoint holds a few thousand; a shared list counts each time it is reached
TRACKER_FIELDS = ("ready", "started", "processed", "completed")
LONGEST_SECONDS = 10 * 365 * 24 * 3600  # a Timer's elapsed time: more than ten years is no real run's
CALLBACK_COUNTS = {  # what Lightning's callbacks take from their state as it is, and count on once training runs
    "EarlyStopping": ("wait_count", "stopped_epoch", "patience"),
    "EMAWeightAveraging": ("latest_update_step",),
}


def is_url(path: Any) -> bool:
    """A URL or an fsspec chain (``local://``, ``file://``, ``s3://``, ``simplecache::...``): never followed."""
    return "://" in str(path) or "::" in str(path)


def inside(path: Any, folders: list[Path]) -> bool:
    """``path`` lies inside one of ``folders`` as written and once links and ``..`` are resolved; a URL never does.
    Compared as written first, so nothing outside ``folders`` is ever looked at."""
    if not isinstance(path, str) or not path or is_url(path) or "\0" in path:
        return False
    written = Path(os.path.normpath(os.path.abspath(path)))
    real_folders = [Path(os.path.realpath(f)) for f in folders]
    written_folders = [Path(os.path.normpath(os.path.abspath(f))) for f in folders] + real_folders
    if not any(written.is_relative_to(f) for f in written_folders):
        return False
    return any(Path(os.path.realpath(written)).is_relative_to(f) for f in real_folders)


def count(value: Any) -> bool:
    return type(value) is int and value >= 0


def dense_cpu_tensor(value: Any) -> bool:
    """A dense tensor in CPU memory (a meta, sparse or quantized one holds no numbers to train on)."""
    return (
        isinstance(value, torch.Tensor)
        and value.layout == torch.strided
        and value.device.type == "cpu"
        and not value.is_quantized
    )


def finite_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.dtype.is_floating_point and bool(torch.isfinite(value).all())
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def walk_problem(ckpt: dict, deepest: int = DEEPEST, most: int = MOST_ENTRIES) -> str | None:
    """Lists, tuples and mappings (keys too) too deep or too many, a tensor not a dense CPU one, or (outside callbacks)
    a number not finite. One loop, no recursion, stopped at ``most``: any file is answered at once."""
    seen = 0
    for top, value in ckpt.items():
        pending = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, torch.Tensor) and not dense_cpu_tensor(item):
                kind = "quantized" if item.is_quantized else f"{item.layout} {item.device}"
                kind = kind.removeprefix("torch.").removeprefix("strided ")
                return f"{str(top)[:40]} holds a {kind} tensor, not a dense CPU one as mixsep.run writes"
            if isinstance(item, float) and not math.isfinite(item) and top != "callbacks":  # checked per callback
                return f"{str(top)[:40]} holds the number {item}, not a finite one as mixsep.run writes"
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


def lightning_version(value: Any) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return isinstance(value, str) and Version(value) >= Version(OLDEST_LIGHTNING)
    except InvalidVersion:
        return False


OLD_LIGHTNING = f"its pytorch-lightning_version is not one from {OLDEST_LIGHTNING} on"


def counters_problem(value: Any, where: str, counter: bool = False) -> str | None:
    """The loops' state (and the data module's position): whole numbers and flags only; a progress counter (each
    ``total`` and ``current``, whose entries Lightning copies onto it, over its methods too) only its own four."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if counter and key not in TRACKER_FIELDS:
                return f"{where} has an entry {str(key)[:60]!r}; a progress counter has {', '.join(TRACKER_FIELDS)}"
            problem = counters_problem(inner, f"{where}.{key}", key in ("total", "current"))
            if problem:
                return problem
        return None
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := counters_problem(v, f"{where}[{i}]"))), None)
    return None if count(value) or type(value) is bool else f"{where} is not a whole number >= 0 (nor a flag)"


def schedulers_problem(schedulers: Any) -> str | None:
    """A schedule's ``load_state_dict`` copies each entry onto it: none may be named like a schedule's method."""
    from torch.optim import lr_scheduler

    kinds = [k for k in vars(lr_scheduler).values() if isinstance(k, type) and hasattr(k, "load_state_dict")]
    methods = {name for kind in kinds for name in dir(kind) if callable(getattr(kind, name, None))}
    if isinstance(schedulers, list) and all(
        isinstance(s, dict) and all(schedule_entry(k, v, methods) for k, v in s.items()) for s in schedulers
    ):
        return None
    return (
        "lr_schedulers is not a list, each a learning-rate schedule's state (plain numbers and words, under names "
        "that are none of its methods)"
    )


def schedule_entry(key: Any, value: Any, methods: set[str]) -> bool:
    if not isinstance(key, str) or key.startswith(("__", "optimizer")) or key in methods:
        return False
    if key in ("base_lrs", "_last_lr"):
        return isinstance(value, list) and all(map(finite_number, value))
    if key in ("last_epoch", "_step_count"):
        return type(value) is int
    lambdas = value if key == "lr_lambdas" else []  # LambdaLR's: None for a plain function, else an object's attributes
    plain = lambda names: all(isinstance(name, str) and not name.startswith("__") for name in names)
    return isinstance(lambdas, list) and all(v is None or isinstance(v, dict) and plain(v) for v in lambdas)


def callback_problem(key: str, state: Any) -> str | None:
    """What Lightning's Timer, EarlyStopping and EMA take from their state as it is, and use once training runs."""
    where = f"callbacks[{key[:40]}]"
    if not isinstance(state, dict):
        return f"{where} is not a mapping"
    if key.startswith("Timer"):  # trainer.max_time: the time already spent counts against it (and the onecycle_time
        elapsed = state.get("time_elapsed")  # schedule's curve); Lightning reads the training stage's only
        seconds = elapsed.get("train", 0) if isinstance(elapsed, dict) else 0
        if type(seconds) not in (int, float) or not 0 <= seconds <= LONGEST_SECONDS:
            return f"{where}.time_elapsed.train is not a time in seconds (a finite number from 0 to ten years)"
    names = next((names for name, names in CALLBACK_COUNTS.items() if key.startswith(name)), ())
    wrong = next((name for name in names if not count(state.get(name, 0))), None)
    if wrong:
        return f"{where}.{wrong} is not a whole number >= 0"
    score = state.get("best_score") if key.startswith("EarlyStopping") else None
    if score is not None and not (isinstance(score, torch.Tensor) and score.numel() == 1 and not score.isnan().any()):
        return f"{where}.best_score is not a number (infinite before the first score)"
    return None


def trainer_state_problem(ckpt: dict) -> str | None:
    """The first part of ``ckpt`` Lightning would restore silently that harms or fails once training runs."""
    callbacks = ckpt.get("callbacks", {})
    return (
        walk_problem(ckpt)
        or (None if lightning_version(ckpt.get("pytorch-lightning_version")) else OLD_LIGHTNING)
        or counters_problem(ckpt.get("loops", {}), "loops")
        or counters_problem(ckpt.get("MixDataModule", {}), "MixDataModule")  # where its epoch stood
        or schedulers_problem(ckpt.get("lr_schedulers", []))
        or (None if isinstance(callbacks, dict) else f"callbacks is a {type(callbacks).__name__}, not a mapping")
        or next(filter(None, (callback_problem(str(key), state) for key, state in callbacks.items())), None)
    )


def checked_trainer_state(ckpt: dict, path: Path, folders: tuple | list[Path] = (), quiet: bool = False) -> dict:
    """``ckpt`` (read from ``path``) as Lightning may restore it, else one ``CheckpointError``; a ModelCheckpoint
    record naming a path outside ``folders`` and ``path``'s folder, or a score not finite, is left out with a note."""
    problem = trainer_state_problem(ckpt)
    if problem:
        raise CheckpointError(
            f"ckpt_path={path} is not a training checkpoint that mixsep.run wrote ({problem}): resume from a "
            "last.ckpt that mixsep.run wrote, or start afresh with ckpt_path=null"
        )
    folders = [path.parent, *folders]
    foreign = {key: foreign_parts(state, folders) for key, state in ckpt.get("callbacks", {}).items()}
    foreign = {key: parts for key, parts in foreign.items() if str(key).startswith("ModelCheckpoint") and parts}
    ckpt["callbacks"] = {key: state for key, state in ckpt.get("callbacks", {}).items() if key not in foreign}
    if foreign and not quiet:
        log.warning(
            f"{path}: left out of its checkpoint record, as outside this run's folder and the checkpoint's own "
            f"(or not a finite score): {'; '.join(part for parts in foreign.values() for part in parts)}"
        )
    return ckpt


def foreign_parts(record: dict, folders: list[Path]) -> list[str]:
    """What a ModelCheckpoint's saved record names outside ``folders`` (a path, a URL: Lightning would delete,
    stat or load it), and its scores that are not finite numbers (they would decide which file is best)."""
    best_k = record.get("best_k_models") or {}
    if not isinstance(best_k, dict):
        return [f"best_k_models={str(best_k)[:120]!r}"]
    paths = {key: record.get(key) or "" for key in CHECKPOINT_PATH_KEYS}
    paths |= {f"best_k_models[{i}]": p for i, p in enumerate(best_k)}
    outside = [
        f"{k}={str(p)[:120]!r}" for k, p in paths.items() if p and not (inside(p, folders) and p.endswith(".ckpt"))
    ]
    if "dirpath" in record and not inside(record["dirpath"], folders):
        outside.append(f"dirpath={str(record['dirpath'])[:120]!r}")
    scores = {"current_score": record.get("current_score"), **best_k}
    scores["best_model_score"] = record.get("best_model_score") if record.get("best_model_path") else None
    scores["kth_value"] = record.get("kth_value") if record.get("kth_best_model_path") else None
    not_finite = [
        f"{str(k)[:120]}={score}" for k, score in scores.items() if score is not None and not finite_number(score)
    ]
    return outside + not_finite


def check_resume_fits(path: str | None, module: L.LightningModule, run_folder: Path | None = None) -> None:
    """Before the run starts: the trainer state checked, the weights and optimizer state loaded by torch (into
    ``module`` and a stand-in optimizer), each parameter's optimizer state of its shape (torch does not check)."""
    if not path:
        return
    from mixsep.models.saved import read_checkpoint

    folders = [run_folder] if run_folder else []
    ckpt = checked_trainer_state(read_checkpoint(path), Path(path), folders, quiet=True)  # said at the restore
    moments: dict = {}
    try:
        module.load_state_dict(ckpt["state_dict"], strict=module.strict_loading)
        for state in ckpt.get("optimizer_states", [])[:1]:  # Lightning restores mixsep's one optimizer
            stand_in = torch.optim.SGD(module.parameters(), lr=0.0)
            stand_in.load_state_dict(state)
            moments = stand_in.state
    except Exception as err:  # torch's own words: which weight, which parameter group
        problem = f"{type(err).__name__}: {one_line(err)}"
    else:
        problem = next(filter(None, (moment_problem(p, state) for p, state in moments.items())), None)
    if problem:
        raise CheckpointError(f"ckpt_path={path} does not fit the model this run builds ({problem}): {RESUME_FIX}")


def moment_problem(parameter: Any, state: Any) -> str | None:
    """A parameter's optimizer state the first step fails on: not numbers and tensors of its shape (or factored)."""
    if not isinstance(parameter, torch.Tensor):
        return None  # torch's load_state_dict keeps it aside: no parameter gets it
    if not isinstance(state, dict):
        return "an optimizer state is not a mapping"
    wrong = next((name for name, value in state.items() if not moment_fits(value, parameter.shape)), None)
    return wrong and f"optimizer state {wrong} does not fit a parameter of shape {tuple(parameter.shape)}"


def moment_fits(value: Any, shape: torch.Size) -> bool:
    if not isinstance(value, torch.Tensor):
        return finite_number(value)
    with contextlib.suppress(RuntimeError):  # shapes that do not broadcast
        return value.dim() == 0 or torch.broadcast_shapes(value.shape, shape) == shape
    return False


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:240]  # torch's load_state_dict says which weight on its later lines


CONNECTOR = "*/connectors/checkpoint_connector.py"  # Lightning's, reading a checkpoint back in these methods:
RESTORING = ("resume_start", "restore", "_restore")
RESUME_FIX = (
    "resume it with the settings of its own run (config_tree.txt in its folder), from a last.ckpt that mixsep.run "
    "wrote, or start afresh with ckpt_path=null"
)


@contextlib.contextmanager
def restore_errors_named(path: str | None) -> Iterator[None]:
    """Around ``trainer.fit(ckpt_path=path)``: an error raised while Lightning's checkpoint connector restores
    ``path`` is one ``CheckpointError`` naming the file; errors of training itself pass through as they are."""
    try:
        yield
    except Exception as err:
        codes = [frame.f_code for frame, _ in traceback.walk_tb(err.__traceback__)]
        restoring = any(c.co_name.startswith(RESTORING) and Path(c.co_filename).match(CONNECTOR) for c in codes)
        if not path or isinstance(err, CheckpointError) or not restoring:
            raise
        raise CheckpointError(
            f"ckpt_path={path} could not be restored ({type(err).__name__}: {one_line(err)}): {RESUME_FIX}"
        ) from err
