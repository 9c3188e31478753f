"""Dashboards through Lightning's ``Logger`` API alone, whatever the logger: the composed config (``log_hyperparams``),
the final scores beside it, the job's status (``finalize``), pictures through one hook per backend (``picture_hook``).
A logger's YAML opts in to the job's identity by naming an argument null (``build_loggers``)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import os
import re
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from PIL import Image

from mixsep.adapters import drop_wandb_init_argument, forget_wandb_run
from mixsep.errors import ConfigError
from mixsep.record.provenance import short_commit
from mixsep.record.where import hydra_job
from mixsep.training.build import build

log = logging.getLogger("mixsep")
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # W&B's ids and MLflow's (32 hex digits)
RUN_ID_BYTES = 256
RUN_ID_ARGUMENTS = ("run_id", "id", "experiment_key", "with_id", "version")  # MLflow, W&B, Comet, Neptune, others
WANDB_REACH_SECONDS = 5.0  # a node without network: told within this long, not W&B's 90 s and a traceback
# the job's status (cluster.job) in the words Lightning passes to finalize; "finished": its SLURM re-queue handler's
FINALIZE_STATUS = {"completed": "success", "pruned": "success", "failed": "failed", "requeued": "finished"}


def while_service_runs(method: Callable) -> Callable:
    """A W&B logger's call that does nothing once W&B's service process is gone: a scheduler that stops a job sends
    SIGTERM to all its processes, W&B's service exits at once, and a log call before the job saves its state at the
    next batch boundary (cluster.requeue) must not turn that re-queue into a failure."""

    @functools.wraps(method)
    def guarded(logger: WandbLogger, *args, **kwargs) -> None:
        if logger._service_gone:
            return
        try:
            method(logger, *args, **kwargs)
        except Exception as err:
            if not service_gone(err):
                raise
            logger._service_gone = True
            log.warning(
                f"W&B's service process is gone ({type(err).__name__}: {err}; e.g. a scheduler's SIGTERM to the whole "
                "job): no more W&B logging in this process; the run's files so far are kept"
            )

    return guarded


class WandbLogger(pl_loggers.WandbLogger):
    """Lightning's W&B logger: offline without an API key or a reachable server, without ``anonymous`` (wandb >= 0.19
    warns about it), its run marked preempting when re-queued, going on without W&B once its service is gone."""

    def __init__(self, *args, **kwargs) -> None:
        offline_without_wandb_server()
        super().__init__(*args, **kwargs)
        drop_wandb_init_argument(self, "anonymous")
        self._service_gone = False

    log_metrics = while_service_runs(pl_loggers.WandbLogger.log_metrics)
    log_hyperparams = while_service_runs(pl_loggers.WandbLogger.log_hyperparams)
    log_image = while_service_runs(pl_loggers.WandbLogger.log_image)

    @rank_zero_only
    @while_service_runs
    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = getattr(sys.modules.get("wandb"), "run", None)
        if status == "finished" and run is not None:
            run.mark_preempting()


class MLFlowLogger(pl_loggers.MLFlowLogger):
    """Lightning's MLflow logger: a local sqlite store by default (MLflow 3 refuses its file store), an unreachable
    server refused in one line, the provenance as tags, a resumed run's params kept (MLflow refuses to change them)."""

    def __init__(self, tracking_uri: str | None = None, local_store: str = "outputs", **kwargs) -> None:
        from mixsep.training.command_line import install_hint

        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(f"logger=mlflow needs mlflow, which is not installed: {install_hint('mlflow')}")
        if tracking_uri and tracking_uri.startswith(("http://", "https://")) and not reachable(tracking_uri):
            raise ConfigError(
                f"the MLflow tracking server {tracking_uri} is not reachable (logger.mlflow.tracking_uri): start it, "
                "or log to the local store with logger.mlflow.tracking_uri=null"
            )
        artifacts = None
        if not tracking_uri:
            root = Path(local_store).resolve()
            root.mkdir(parents=True, exist_ok=True)
            tracking_uri, artifacts = f"sqlite:///{root / 'mlflow.db'}", (root / "mlflow-artifacts").as_uri()
        super().__init__(tracking_uri=tracking_uri, artifact_location=artifacts, **kwargs)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        params = dict(params)
        provenance = params.pop("provenance", None)
        if provenance:
            self.experiment.set_tag(self.run_id, "mixsep.commit", short_commit(provenance))
            for key, value in provenance.items():
                self.experiment.set_tag(self.run_id, f"mixsep.provenance.{key}", str(value)[:5000])
        if self.experiment.get_run(self.run_id).data.params:  # a resumed run: its params stay, it runs again
            self.experiment.update_run(self.run_id, status="RUNNING")
        else:
            super().log_hyperparams(params)


def offline_without_wandb_server() -> None:
    """Offline W&B when there is no API key, or its server is not reachable: never a login prompt, never a hang."""
    if os.environ.get("WANDB_MODE"):
        return
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    server = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    if not has_key:
        log.info("no W&B API key found; logging to W&B offline (sync later with `wandb sync`).")
    elif not reachable(server):
        log.warning(
            f"W&B server {server} not reachable within {WANDB_REACH_SECONDS:g} s: logging to W&B offline "
            "(sync later with `wandb sync <run dir>/wandb/offline-run-*`)"
        )
    else:
        return
    os.environ["WANDB_MODE"] = "offline"


def reachable(url: str, timeout: float = WANDB_REACH_SECONDS) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout`` seconds, name lookup included
    (in a thread: getaddrinfo has no timeout of its own)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def connect() -> None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
            result.append(True)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result)


def build_loggers(
    loggers_cfg: DictConfig | None, out: Path, experiment_name: str, ckpt_path: str | None, built: list | None = None
) -> list:
    """The configured loggers, each appended to ``built`` at once (the job finalizes it even if a later one fails).
    Null arguments get the job's identity: ``job_names``; the first of ``RUN_ID_ARGUMENTS``, the run id kept in
    ``<out>/<key>_<arg>.txt`` or beside ``ckpt_path``'s folder (a resumed or re-queued job continues its run)."""
    loggers = [] if built is None else built
    names = job_names(experiment_name)
    for key, logger_cfg in (loggers_cfg or {}).items():
        if logger_cfg is None:  # logger.csv=null: that logger switched off
            continue
        unset = [argument for argument, value in logger_cfg.items() if value is None]
        run_id_argument = next((a for a in RUN_ID_ARGUMENTS if a in unset), None)
        filled = {argument: names[argument] for argument in unset if argument in names}
        if run_id_argument:
            filled[run_id_argument] = kept_run_id(out, ckpt_path, f"{key}_{run_id_argument}.txt")
        loggers.append(logger := build(logger_cfg, **filled))
        if run_id_argument and rank_zero_only.rank == 0:  # DDP: rank 0 alone has the run
            getattr(logger, "experiment", None)  # the run starts now: a server that refuses it stops the job here
            (out / f"{key}_{run_id_argument}.txt").write_text(f"{logger.version}\n")
    return loggers


def job_names(experiment_name: str) -> dict:
    """The job's run name (``name``, ``run_name``: the experiment, or ``<job number>:<overrides>`` in a sweep), its
    ``group`` (the sweep's folder) and ``experiment_name`` (the experiment, and the sweep's folder in a sweep)."""
    job = hydra_job()
    swept = [o for o in job["overrides"] if not o.startswith(("hydra.", "data.root=", "data.cache_dir="))]
    name = f"{job['job_num']}:{','.join(swept) or experiment_name}" if job["multirun"] else experiment_name
    experiment = f"{experiment_name}/{job['sweep']}" if job["multirun"] else experiment_name
    return {"name": name, "run_name": name, "group": job["sweep"], "experiment_name": experiment}


def kept_run_id(out: Path, ckpt: str | None, name: str) -> str | None:
    """The run id kept in ``out``/``name``, else beside the folder of the checkpoint it resumes from."""
    earlier = Path(str(ckpt)).parent.parent / name if ckpt and ckpt != "auto" else None
    return next((run_id for f in (out / name, earlier) if f is not None and (run_id := read_run_id(f))), None)


def read_run_id(path: Path) -> str | None:
    """The run id in ``path`` (a file from elsewhere): its first ``RUN_ID_BYTES`` bytes, from a regular file (never a
    link, a pipe or a device, which could block or never end), when they are one id of ``RUN_ID``; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        if path.is_symlink():
            log.warning(f"not reading a run id from {path}: it is a link")
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            log.warning(f"not reading a run id from {path}: it is not a regular file")
            return None
        text = file.read(RUN_ID_BYTES + 1).decode("ascii", errors="replace").strip()
    if not RUN_ID.fullmatch(text):
        log.warning(f"not continuing the dashboard run named in {path}: {text[:40]!r} is not a run id")
        return None
    return text


def finish_dashboards(loggers: list, status: str) -> None:
    """Finalize the loggers with the job's status; close the W&B run Lightning leaves open (for a sweep's next job)."""
    for logger in loggers:
        try:
            logger.finalize(FINALIZE_STATUS.get(status, "failed"))
        except Exception as err:  # e.g. its server went away: the job's outcome stands, its files are kept
            log.warning(f"{type(logger).__name__} not finalized ({type(err).__name__}: {err})")
    finish_wandb(failed=status == "failed")


def service_gone(err: BaseException) -> bool:
    """An error of a W&B call that means W&B's service process has ended (wandb's HandleAbandonedError, by name)."""
    return isinstance(err, ConnectionError) or type(err).__name__ == "HandleAbandonedError"


def finish_wandb(failed: bool) -> None:
    """Close this process's W&B run, if any (a re-queued job's run was marked preempting by its finalize)."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    try:
        wandb.finish(exit_code=1 if failed else 0)
    except Exception as err:  # e.g. its service was stopped by the same signal: the job's outcome stands
        log.warning(f"W&B run not closed cleanly ({type(err).__name__}: {err}); its files are kept")
        if service_gone(err):  # wandb raised before letting go of the run: a later job starts its own
            with contextlib.suppress(Exception):
                forget_wandb_run()


def publish_final_scores(loggers: list, params: dict, metrics: dict, step: int, out: Path) -> None:
    """The objective and final scores beside the parameters where ``log_hyperparams`` takes metrics (``hp_metric``:
    the objective), else as metrics; then samples.png and loss.png to the loggers that show pictures."""
    final = {k: v for k, v in metrics.items() if k.startswith(("test/", "val/")) and isinstance(v, (int, float))}
    final = {k: v for k, v in final.items() if not isinstance(v, bool)}
    final["objective"] = metrics["objective"]
    for logger in loggers:
        if "metrics" in inspect.signature(logger.log_hyperparams).parameters:
            logger.log_hyperparams(params, metrics={"hp_metric": final["objective"], **final}, step=step)
        else:
            logger.log_metrics(final, step=step)
    for key, picture in (("test_samples", out / "samples.png"), ("loss", out / "loss.png")):
        if picture.is_file():
            show_picture(loggers, key, np.asarray(Image.open(picture).convert("RGB")), step, picture.name)


def _tensorboard_picture(logger, key: str, pixels: np.ndarray, step: int, caption: str) -> None:
    logger.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")


def _mlflow_picture(logger, key: str, pixels: np.ndarray, step: int, caption: str) -> None:
    logger.experiment.log_image(logger.run_id, pixels, artifact_file=f"{key}.png")  # the latest, by name


def _own_log_image(logger, key: str, pixels: np.ndarray, step: int, caption: str) -> None:
    logger.log_image(key, [pixels], step=step, caption=[caption])  # W&B's signature, Lightning's only log_image


PICTURE_HOOKS = ((pl_loggers.TensorBoardLogger, _tensorboard_picture), (pl_loggers.MLFlowLogger, _mlflow_picture))


def picture_hook(logger) -> Callable[[str, np.ndarray, int, str], None] | None:
    """How ``logger`` shows ``(key, pixels: H x W x 3 uint8, step, caption)``: ``PICTURE_HOOKS``, else ``log_image``."""
    for kind, show in PICTURE_HOOKS:
        if isinstance(logger, kind):
            return functools.partial(show, logger)
    return functools.partial(_own_log_image, logger) if callable(getattr(logger, "log_image", None)) else None


def show_picture(loggers: list, key: str, pixels: np.ndarray, step: int, caption: str) -> None:
    """``pixels`` (H x W x 3, 8-bit) to every logger that shows pictures."""
    for show in filter(None, map(picture_hook, loggers)):
        show(key, pixels, step, caption)
