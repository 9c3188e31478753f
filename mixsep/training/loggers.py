"""Loggers and dashboards: the configured Lightning loggers, one W&B or MLflow run per job (W&B offline without a
key; each run closed when the job ends with its status, its id kept for resumes), and the final scores on W&B's
summary, MLflow's metrics and TensorBoard's hparams table."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import secrets
import socket
import stat
import string
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from mixsep.adapters import drop_wandb_init_argument, forget_wandb_run
from mixsep.cluster.provenance import short_commit
from mixsep.cluster.where import hydra_job
from mixsep.errors import ConfigError
from mixsep.training.build import build

log = logging.getLogger("mixsep")
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # W&B's ids and MLflow's (32 hex digits)
RUN_ID_BYTES = 256


class WandbLogger(pl_loggers.WandbLogger):
    """Lightning's W&B logger, without its ``anonymous`` argument (Lightning always passes it, as None, and
    wandb >= 0.19 warns about it on every run), that goes on without W&B once W&B's service process is gone.

    A scheduler that stops a job (pre-emption, ``scontrol requeue``, ``scancel``) sends SIGTERM to every process
    of the job, W&B's service among them, which exits at once; the job itself saves its state at the next batch
    boundary (cluster.requeue). A log call in between must not turn that re-queue into a failure."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        drop_wandb_init_argument(self, "anonymous")
        self._service_gone = False

    def _while_service_runs(self, method: Callable, *args, **kwargs) -> None:
        if self._service_gone:
            return
        try:
            method(*args, **kwargs)
        except Exception as err:
            if not service_gone(err):
                raise
            self._service_gone = True
            log.warning(
                f"W&B's service process is gone ({type(err).__name__}: {err}; e.g. a scheduler's SIGTERM to the whole "
                "job): no more W&B logging in this process; the run's files so far are kept"
            )

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._while_service_runs(super().log_metrics, metrics, step)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        self._while_service_runs(super().log_hyperparams, params)

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self._while_service_runs(super().log_image, key, images, step, **kwargs)

    @rank_zero_only
    def update_summary(self, values: dict) -> None:
        self._while_service_runs(self.experiment.summary.update, values)


class MLFlowLogger(pl_loggers.MLFlowLogger):
    """Lightning's MLflow logger, with a local store by default (sqlite under ``local_store``: MLflow 3 refuses its
    file store), the composed config as params once (a resumed run keeps the params it has; values differ only in
    how it was started), the provenance as tags, and the job's final status as a tag."""

    REQUIRES = "mlflow"  # checked before Hydra runs (training/command_line.py): one line naming the extra

    def __init__(self, tracking_uri: str | None = None, local_store: str = "outputs", **kwargs) -> None:
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
            for key, value in flat_params(provenance, delimiter=".").items():
                self.experiment.set_tag(self.run_id, f"mixsep.provenance.{key}", str(value)[:5000])
        have = self.experiment.get_run(self.run_id).data.params
        flat = flat_params(params)
        new = {k: v for k, v in flat.items() if k not in have}
        if new:
            super().log_hyperparams(new)

    def set_status(self, status: str) -> None:
        """The job's status (running, completed, failed, pruned, requeued, cancelled) as the tag mixsep.status, and
        MLflow's own run status to match."""
        self.experiment.set_tag(self.run_id, "mixsep.status", status)
        mlflow_status = {"running": "RUNNING", "completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}
        self.experiment.update_run(self.run_id, status=mlflow_status.get(status, "KILLED"))


def flat_params(params: dict, delimiter: str = "/", parent: str = "") -> dict:
    """``{'a': {'b': 1}}`` -> ``{'a/b': 1}``, as Lightning's loggers flatten hyperparameters (a list of mappings by
    index, an empty list dropped), so the keys match those an MLflow run already has."""
    flat: dict = {}
    for key, value in params.items():
        name = f"{parent}{delimiter}{key}" if parent else str(key)
        if isinstance(value, dict):
            flat.update(flat_params(value, delimiter, name))
        elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
            for i, item in enumerate(value):
                flat.update(flat_params(item, delimiter, f"{name}/{i}"))
        else:
            flat[name] = value
    return flat


def _mlflow_logger(logger_cfg: DictConfig, out: Path, experiment_name: str, ckpt: str | None) -> MLFlowLogger:
    """The job's MLflow run: the one its folder (or the folder of the checkpoint it resumes from) names, else a new
    one, created now so that an unreachable server stops the run before training, in one line."""
    from mixsep.training.command_line import install_hint

    if importlib.util.find_spec(needs := MLFlowLogger.REQUIRES) is None:
        raise ConfigError(f"logger=mlflow needs {needs}, which is not installed: {install_hint(needs)}")
    uri = logger_cfg.get("tracking_uri")
    if uri and str(uri).startswith(("http://", "https://")) and not reachable(str(uri), WANDB_REACH_SECONDS):
        raise ConfigError(
            f"the MLflow tracking server {uri} is not reachable (logger.mlflow.tracking_uri): start it, or log to "
            "the local store with logger.mlflow.tracking_uri=null"
        )
    job = hydra_job()
    experiment = f"{experiment_name}/{job['sweep']}" if job["multirun"] else experiment_name
    logger = build(
        logger_cfg,
        experiment_name=logger_cfg.get("experiment_name") or experiment,
        run_name=logger_cfg.get("run_name") or job_run_name(experiment_name),
        run_id=kept_run_id(out, ckpt, "mlflow_run_id.txt"),
    )
    if rank_zero_only.rank == 0:  # DDP: rank 0 alone has the run (Lightning's experiment is rank-zero only)
        (out / "mlflow_run_id.txt").write_text(logger.run_id + "\n")  # creates the run, or finds the one to continue
        logger.set_status("running")
    return logger


def kept_run_id(out: Path, ckpt: str | None, name: str) -> str | None:
    """A dashboard run id kept in the job's folder, or in the folder of the checkpoint it resumes from (a resume
    into a new folder continues the same run). Either comes from elsewhere: only a short id of W&B's and MLflow's
    alphabet (``RUN_ID``) read from a plain file is taken, anything else is left with a note."""
    earlier = Path(str(ckpt)).parent.parent / name if ckpt and ckpt != "auto" else None
    return next((run_id for f in (out / name, earlier) if f is not None and (run_id := read_run_id(f))), None)


def read_run_id(path: Path) -> str | None:
    """The run id in ``path``: its first ``RUN_ID_BYTES`` bytes, from a regular file (never a link, a pipe or a
    device, which could block or never end), when they are one id of ``RUN_ID``; else None."""
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


def job_run_name(experiment_name: str) -> str:
    """A dashboard run's name: the experiment name, or ``<job number>:<overrides>`` for a sweep's job."""
    job = hydra_job()
    swept = [o for o in job["overrides"] if not o.startswith(("hydra.", "data.root=", "data.cache_dir="))]
    return experiment_name if not job["multirun"] else f"{job['job_num']}:{','.join(swept) or experiment_name}"


def _prepare_wandb_env() -> None:
    """Offline W&B when there is no API key: never a login prompt, never a hang."""
    if os.environ.get("WANDB_MODE"):
        return
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
        log.info("no W&B API key found; logging to W&B offline (sync later with `wandb sync`).")
        return
    server = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    if not reachable(server, WANDB_REACH_SECONDS):
        os.environ["WANDB_MODE"] = "offline"
        log.warning(
            f"W&B server {server} not reachable within {WANDB_REACH_SECONDS:g} s: logging to W&B offline "
            "(sync later with `wandb sync <run dir>/wandb/offline-run-*`)"
        )


WANDB_REACH_SECONDS = 5.0  # a compute node without network: offline after this long, not W&B's 90 s and a traceback


def reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout`` seconds (name lookup
    included: it runs in a thread, as getaddrinfo itself has no timeout)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def build_loggers(
    loggers_cfg: DictConfig | None, out: Path, experiment_name: str, ckpt_path: str | None, built: list | None = None
) -> list:
    """The configured Lightning loggers of a job in ``out`` (``ckpt_path``: the checkpoint it resumes from,
    whose folder's dashboard runs it continues), each appended to ``built`` (the job's dashboards) as soon as it
    exists, so that the job closes it with its status even when a later one fails to start."""
    from hydra.utils import get_class

    loggers = [] if built is None else built
    for logger_cfg in (loggers_cfg or {}).values():
        if logger_cfg is None:  # logger.csv=null: that logger switched off
            continue
        kind = get_class(str(logger_cfg["_target_"]))  # recognised by its class, whatever its key is named
        if issubclass(kind, pl_loggers.WandbLogger):
            _prepare_wandb_env()
            if os.environ.get("WANDB_MODE") == "disabled":
                continue
            identity = wandb_identity(out, experiment_name, ckpt_path)  # one W&B run per job, grouped by sweep
            overrides = {k: v for k, v in identity.items() if logger_cfg.get(k) is None}
            loggers.append(build(logger_cfg, **overrides))
        elif issubclass(kind, MLFlowLogger):  # mixsep's: a local store by default, the job's status at its end
            loggers.append(_mlflow_logger(logger_cfg, out, experiment_name, ckpt_path))
        else:
            loggers.append(build(logger_cfg))
    return loggers


def wandb_identity(out: Path, experiment_name: str, ckpt: str | None) -> dict:
    """Run id (kept in the run folder, so a resumed job continues the same W&B run), group (the sweep)
    and name (the job's overrides) for the WandbLogger."""
    run_id = kept_run_id(out, ckpt, "wandb_id.txt")
    if run_id is None:  # W&B's own id alphabet and length
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    out.mkdir(parents=True, exist_ok=True)
    (out / "wandb_id.txt").write_text(run_id + "\n")
    return {"id": run_id, "group": hydra_job()["sweep"], "name": job_run_name(experiment_name)}


def finish_dashboards(loggers: list, status: str) -> None:
    """Close a job's dashboard runs with its status (completed, failed, pruned, requeued, cancelled)."""
    finish_wandb(failed=status == "failed", preempted=status == "requeued")
    for logger in loggers:
        if not isinstance(logger, MLFlowLogger) or rank_zero_only.rank != 0:
            continue
        try:
            logger.set_status(status)
        except Exception as err:  # the server went away: the job's outcome stands, its files are kept
            log.warning(f"MLflow run {logger.run_id} not closed ({type(err).__name__}: {err})")


def service_gone(err: BaseException) -> bool:
    """Whether an error of a W&B call means that W&B's service process has ended: the socket to it closed, or a
    reply it will never send (wandb's HandleAbandonedError, named here so that wandb is imported only if used)."""
    return isinstance(err, ConnectionError) or type(err).__name__ == "HandleAbandonedError"


def finish_wandb(failed: bool, preempted: bool = False) -> None:
    """Close this job's W&B run, so the next job of the sweep (same process) starts its own. A re-queued
    job's run is marked preempting, not failed: its next allocation continues the same run id."""
    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is None:
        return
    try:
        if preempted:
            wandb.run.mark_preempting()
        wandb.finish(exit_code=1 if failed else 0)
    except Exception as err:  # e.g. its service was stopped by the same signal: the job's outcome stands
        log.warning(f"W&B run not closed cleanly ({type(err).__name__}: {err}); its files are kept")
        if service_gone(err):
            # the service is gone, and wandb raised before letting go of the run: forget the run and the broken
            # connection (and its exit hook), so that a later job of this process starts its own on a new service
            with contextlib.suppress(Exception):
                forget_wandb_run()


def publish_final_scores(loggers: list, params: dict, metrics: dict, step: int, out: Path) -> None:
    """The objective and the final validation and test scores on the dashboards: TensorBoard's hparams table
    (``hp_metric`` is the objective), the W&B run's summary, the MLflow run's metrics, with samples.png and loss.png
    as its artifacts (W&B and TensorBoard get the sample pictures while training: callbacks.SamplesAndCurves)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    final = {
        k: v
        for k, v in metrics.items()
        if k.startswith(("test/", "val/")) and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    final["objective"] = metrics["objective"]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            scores = {"hp_metric": metrics["objective"], **{f"final/{k}": v for k, v in final.items()}}
            logger.log_hyperparams(params, metrics=scores, step=step)
            logger.experiment.flush()
        elif isinstance(logger, WandbLogger):
            logger.update_summary(final)
        elif isinstance(logger, pl_loggers.WandbLogger):  # Lightning's own, configured by its _target_
            logger.experiment.summary.update(final)
        elif isinstance(logger, pl_loggers.MLFlowLogger):
            logger.log_metrics(final, step=step)
            for picture in (out / "samples.png", out / "loss.png"):
                if picture.is_file():
                    logger.experiment.log_artifact(logger.run_id, str(picture))
