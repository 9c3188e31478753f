"""Training entry: ``python -m mixsep.run model=resnet_dual`` fits, then tests the best checkpoint.

The run directory gets metrics.json, status.json, samples.png, loss.png, checkpoints/ (best + last) and
logs. The task function returns the validation objective (``optimized_metric``) to Hydra's sweepers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, open_dict

from mixsep import jobs, requeue
from mixsep.artifacts import SamplesAndCurves, save_loss_plot, write_config_tree, write_test_outputs
from mixsep.errors import CheckpointError, ConfigError

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: main may run as mixsep.run or __main__
TEST_KEYS = ("test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim")
log = logging.getLogger("mixsep")
# ${if_tty:a,b}: a on a terminal, b when stdout goes to a file or a pipe (progress bar refresh rates)
OmegaConf.register_new_resolver("if_tty", lambda tty, plain: tty if sys.stdout.isatty() else plain, replace=True)


def _prepare_wandb_env(cfg: DictConfig) -> None:
    """Offline W&B when there is no API key: never a login prompt, never a hang."""
    if "wandb" not in (cfg.get("logger") or {}) or os.environ.get("WANDB_MODE"):
        return
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
        log.info("no W&B API key found; logging to W&B offline (sync later with `wandb sync`).")


def build_loggers(cfg: DictConfig, out: Path) -> list:
    _prepare_wandb_env(cfg)
    loggers = []
    for key, logger_cfg in (cfg.get("logger") or {}).items():
        if key == "wandb":
            if os.environ.get("WANDB_MODE") == "disabled":
                continue
            identity = jobs.wandb_identity(cfg, out)  # one W&B run per job, grouped by sweep
            overrides = {k: v for k, v in identity.items() if logger_cfg.get(k) is None}
            loggers.append(instantiate(logger_cfg, **overrides))
        else:
            loggers.append(instantiate(logger_cfg))
    return loggers


def build_callbacks(cfg: DictConfig) -> list:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node:
            continue
        if "_target_" not in node:  # e.g. a preset's callbacks.ema options on top of callbacks=default
            raise ConfigError(
                f"callbacks.{name} has options but no _target_: the callbacks group in use does not define "
                f"it. Choose a group that does (e.g. callbacks={name}), or remove it with ~callbacks.{name}"
            )
        callbacks.append(build(node))
    return callbacks


def build(node, **kwargs):
    """``hydra.utils.instantiate``, but a user-fixable error raised by the constructor comes out as itself
    (Hydra wraps it in an InstantiationException)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        fixable = jobs.user_error(err)
        if fixable is None:
            raise
        raise fixable from err


def build_module(model_cfg: DictConfig) -> L.LightningModule:
    # plain containers: the net's config is saved in the checkpoint and must load without omegaconf
    return build(OmegaConf.to_container(model_cfg, resolve=True), _recursive_=False)


INTEGER_TRAINER_ARGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "num_nodes",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "accumulate_grad_batches",
)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``auto``: bf16 mixed precision where the hardware computes bf16 natively, else 32-bit; says which."""
    precision = str(trainer_cfg.get("precision"))
    if precision != "auto":
        return precision
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        fast, where = torch.cuda.is_bf16_supported(), f"GPU {torch.cuda.get_device_name(0)}"
    else:
        fast = cpu_has_bf16()
        where = f"CPU {'with' if fast else 'without'} AVX512-BF16/AMX"
    choice = "bf16-mixed" if fast else "32-true"
    log.info(f"precision: {choice} (trainer.precision=auto on this {where}; set trainer.precision= to choose)")
    return choice


def fit_trainer_to_machine(trainer_cfg: DictConfig) -> None:
    """Refuse more devices than the machine has; on CPUs, DDP (gloo) trains without SyncBatchNorm, which
    works only on GPUs (said once)."""
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    devices = trainer_cfg.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 1:
        have = torch.cuda.device_count() if on_gpu else os.cpu_count() or 1
        what = "GPUs" if on_gpu else "CPU cores"
        if devices > have:
            raise ConfigError(
                f"trainer.devices={devices} is more than the {have} {what} of this machine: "
                f"use trainer.devices={have} or fewer (-1: all of them)"
            )
    if trainer_cfg.get("sync_batchnorm") and not on_gpu:
        trainer_cfg.sync_batchnorm = False
        log.info("trainer.sync_batchnorm: off on CPU (SyncBatchNorm needs GPUs); each process keeps its own statistics")


def build_trainer(trainer_cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    fit_trainer_to_machine(trainer_cfg)
    for key in INTEGER_TRAINER_ARGS:  # Lightning checks some of these only mid-fit, with a bare assert
        value = trainer_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"trainer.{key}={value!r} must be an integer (e.g. trainer.{key}=10)")
    try:
        return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    except Exception as err:
        if jobs.user_error(err) is not None:
            raise
        cause = err.__cause__ or err
        raise ConfigError(
            f"Lightning's Trainer refused the trainer config: {type(cause).__name__}: {cause}. "
            "Check the trainer.* values (e.g. trainer.max_epochs must be an integer, "
            "trainer.precision one of 32-true, bf16-mixed, 16-mixed)."
        ) from err


def resolve_ckpt_path(cfg: DictConfig, out: Path) -> str | None:
    """``auto``: resume from this run folder's last.ckpt when there is one (a re-queued or re-run job)."""
    ckpt = cfg.get("ckpt_path")
    if ckpt == "auto":
        last = out / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if ckpt and not Path(str(ckpt)).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt} does not exist. Pass a .ckpt written by mixsep.run "
            "(<run dir>/checkpoints/last.ckpt), ckpt_path=auto or ckpt_path=null."
        )
    if ckpt:
        check_resumable(Path(str(ckpt)))
    return ckpt or None


def check_resumable(path: Path) -> None:
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


def composed_config(cfg: DictConfig) -> dict:
    """The whole composed config (data, model incl. model.net, trainer, seed, ...), Hydra's own node aside."""
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }


def check_optimized_metric(name: str) -> None:
    if not name.startswith("val/"):
        raise ConfigError(
            f"optimized_metric={name} must be a validation metric (val/...): sweeps select on "
            "the validation pairs, never on the test pairs."
        )


def validation_objective(trainer: L.Trainer, module, datamodule, ckpt_path: str | None, name: str) -> dict:
    """The validation scores of ``ckpt_path``: what a sweeper may optimise (never a test score)."""
    results = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]
    if name not in results:
        raise ConfigError(f"optimized_metric={name} is not logged by this model; one of {sorted(results)}")
    return {k: float(v) for k, v in results.items()}


def checkpoint_paths(trainer: L.Trainer) -> tuple[str, str]:
    """The best checkpoint (of the monitoring ModelCheckpoint) and the last one (``last.ckpt``, written by a
    ModelCheckpoint without a monitor), each "" where none was written."""
    written = [c for c in trainer.checkpoint_callbacks if c.best_model_path]
    best = next((c.best_model_path for c in written if c.monitor), "")
    last = next((c.best_model_path for c in written if not c.monitor), "")
    # a config that brings back save_last on the monitoring callback instead
    return best, last or next((c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path), "")


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


def train(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    jobs.check_writable(out)
    with open_dict(cfg):  # the tree and metrics.json show the precision actually used
        cfg.trainer.precision = resolve_precision(cfg.trainer)
    tree = write_config_tree(cfg, out / "config_tree.txt")
    jobs.check_strategy(cfg.trainer)
    check_optimized_metric(cfg.optimized_metric)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    resume_from = resolve_ckpt_path(cfg, out)
    datamodule = build(cfg.data)
    module = build_module(cfg.model)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg, out)
    if loggers and module.hparams.get("scheduler") and not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = build_trainer(cfg.trainer, callbacks, loggers)
    if tree is not None:  # the config built: show it (a bad value stopped above with one line instead)
        import rich

        rich.print(tree)
    for logger in loggers:
        logger.log_hyperparams(composed_config(cfg))

    with jobs.ddp_children_run_this_job(cfg.trainer, out):
        started, start = jobs.now_iso(), time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        train_seconds, ended = time.perf_counter() - start, jobs.now_iso()

        best, last = checkpoint_paths(trainer)
        val = validation_objective(trainer, module, datamodule, best or last or None, cfg.optimized_metric)
        tested = (best if cfg.test_ckpt == "best" else "") or last or None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=tested)[0]

    extra = {
        "experiment": cfg.experiment_name,
        "debug_mode": cfg.get("debug_mode"),
        "train_seconds": round(train_seconds, 2),
        "train_start": started,
        "train_end": ended,
        "resumed_from": resume_from,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seed": cfg.seed,
        "precision": str(cfg.trainer.get("precision")),
        "checkpoint": str(tested) if tested else None,
        "optimized_metric": cfg.optimized_metric,
        "objective": val[cfg.optimized_metric],
        **val,
        **jobs.where_it_ran(trainer),
    }
    if not trainer.is_global_zero:
        return {**results, **extra}
    metrics = write_test_outputs(out, results, module, datamodule, cfg.samples, **extra)
    publish_final_scores(loggers, composed_config(cfg), metrics, trainer.global_step)
    history = next((c for c in callbacks if isinstance(c, SamplesAndCurves)), None)
    if history is not None:
        save_loss_plot(out / "loss.png", history.history)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra's task function: one job. Returns the validation objective to sweepers.

    A failing job records the failure in its folder's status.json. Inside a sweep it raises, so that
    the launcher marks this job failed and the other jobs go on; a single run prints the message of a
    user-fixable error (no traceback) and exits non-zero.
    """
    from lightning.pytorch.utilities import rank_zero_only

    out = Path(cfg.paths.output_dir)
    zero = rank_zero_only.rank == 0
    try:
        if zero:
            jobs.check_writable(out)
            jobs.write_status(out, "running", requeues=requeue.requeue_count())
        metrics = train(cfg)
    except BaseException as err:
        stopped_early = dict(requeue.stopping) if isinstance(err, SystemExit) else {}
        if zero:
            with contextlib.suppress(OSError):  # an unwritable folder: the message below says so
                if stopped_early:  # re-queued or cancelled by the scheduler: not a failure
                    requeues = requeue.requeue_count() + (stopped_early["status"] == "requeued")
                    jobs.write_status(out, stopped_early["status"], reason=stopped_early["reason"], requeues=requeues)
                else:
                    jobs.write_status(out, "failed", **jobs.failure_fields(err))
        jobs.finish_wandb(failed=not stopped_early, preempted=stopped_early.get("status") == "requeued")
        fixable = jobs.user_error(err)
        if fixable is not None and not jobs.hydra_job()["multirun"]:
            sys.exit(f"mixsep: {fixable}")
        raise
    jobs.finish_wandb(failed=False)
    if zero:
        jobs.write_status(
            out,
            "completed",
            optimized_metric=cfg.optimized_metric,
            objective=metrics["objective"],
            requeues=requeue.requeue_count(),
        )
    return metrics["objective"]


if __name__ == "__main__":
    # Call the task function through the imported module, not __main__: Ray and submitit pickle it by
    # reference (mixsep.run.main), and Lightning's DDP children start as `python -m mixsep.run`.
    from mixsep.run import main as task

    task()
