"""Loggers and dashboards: the configured Lightning loggers, one W&B run per job (offline without a key,
closed when the job ends, its id kept for resumes), and the final scores on W&B's summary and TensorBoard's
hparams table."""

from __future__ import annotations

import logging
import os
import secrets
import string
import sys
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch import loggers as pl_loggers
from omegaconf import DictConfig

from mixsep.cluster.where import hydra_job

log = logging.getLogger("mixsep")


class WandbLogger(pl_loggers.WandbLogger):
    """Lightning's W&B logger without its ``anonymous`` argument, which Lightning always passes (as None) and
    wandb >= 0.19 warns about on every run ("The anonymous setting has no effect")."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)


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
    import socket
    import threading
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


def build_loggers(loggers_cfg: DictConfig | None, out: Path, experiment_name: str, ckpt_path: str | None) -> list:
    """The configured Lightning loggers of a job in ``out`` (``ckpt_path``: the checkpoint it resumes from,
    whose folder's dashboard runs it continues)."""
    loggers = []
    for key, logger_cfg in (loggers_cfg or {}).items():
        if key == "wandb":
            _prepare_wandb_env()
            if os.environ.get("WANDB_MODE") == "disabled":
                continue
            identity = wandb_identity(out, experiment_name, ckpt_path)  # one W&B run per job, grouped by sweep
            overrides = {k: v for k, v in identity.items() if logger_cfg.get(k) is None}
            loggers.append(instantiate(logger_cfg, **overrides))
        else:
            loggers.append(instantiate(logger_cfg))
    return loggers


def wandb_identity(out: Path, experiment_name: str, ckpt: str | None) -> dict:
    """Run id (kept in the run folder, so a resumed job continues the same W&B run), group (the sweep)
    and name (the job's overrides) for the WandbLogger."""
    id_file = out / "wandb_id.txt"
    earlier = Path(str(ckpt)).parent.parent / "wandb_id.txt" if ckpt and ckpt != "auto" else None
    if id_file.exists():
        run_id = id_file.read_text().strip()
    elif earlier is not None and earlier.exists():  # resumed into a new folder: same W&B run
        run_id = earlier.read_text().strip()
    else:  # W&B's own id alphabet and length
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    out.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run_id + "\n")
    job = hydra_job()
    swept = [o for o in job["overrides"] if not o.startswith(("hydra.", "data.root=", "data.cache_dir="))]
    name = experiment_name if not job["multirun"] else f"{job['job_num']}:{','.join(swept) or experiment_name}"
    return {"id": run_id, "group": job["sweep"], "name": name}


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


def publish_final_scores(loggers: list, params: dict, metrics: dict, step: int) -> None:
    """The objective and the final validation and test scores on the dashboards: TensorBoard's hparams
    table (``hp_metric`` is the objective) and the W&B run's summary."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

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
            logger.experiment.summary.update(final)
