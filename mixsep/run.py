"""``python -m mixsep.run model=resnet_dual``: fit, then test the best checkpoint (metrics.json, status.json,
samples.png, loss.png, checkpoints/, logs); the validation objective goes back to Hydra's sweepers."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mixsep.cluster.ddp import ddp_children_run_this_job
from mixsep.cluster.job import Job
from mixsep.errors import ConfigError
from mixsep.record.where import now_iso
from mixsep.training.build import build, build_callbacks, build_module, build_trainer
from mixsep.training.callbacks import TestOutputs
from mixsep.training.checkpoints import (
    check_resume_fits,
    checkpoint_paths,
    resolve_ckpt_path,
    restore_errors_named,
)
from mixsep.training.command_line import hydra_app
from mixsep.training.config import composed_config, settled_config, write_config_tree
from mixsep.training.loggers import build_loggers, finish_dashboards, publish_final_scores


def train(cfg: DictConfig, job: Job | None = None) -> dict:
    """Fit, validate the best checkpoint, test it: the run's metrics (``job``: its record, stop and dashboards;
    none: not recorded). Each object is built from its own node; lower modules get values and built objects."""
    out = Path(cfg.paths.output_dir)  # made by Hydra; claimed and checked writable by the job
    job = job or Job()
    job.optimized_metric = cfg.optimized_metric
    cfg = settled_config(cfg)  # checked, and as used here: the tree and metrics.json show the precision used
    tree = write_config_tree(cfg, out / "config_tree.txt")
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in metrics.json; stderr keeps one line
    resume_from = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.model, out)

    datamodule = build(cfg.data)
    module = build_module(cfg.model)
    if cfg.model.get("tta") or cfg.model.get("tta_color"):  # validate and test with a self-ensemble
        module.use_test_time_ensemble(dihedral=cfg.model.tta, color=cfg.model.get("tta_color", False))
    loggers: list = []  # closed with the job's status, even when a later one fails to start
    job.on_end.append(lambda status: finish_dashboards(loggers, status))
    build_loggers(cfg.get("logger"), out, cfg.experiment_name, cfg.get("ckpt_path"), loggers)
    callbacks = build_callbacks(cfg.get("callbacks"), job)
    trainer = build_trainer(cfg.trainer, callbacks, loggers, run_folder=out)
    datamodule.check()
    check_resume_fits(resume_from, module, out)  # its trainer state is data: checked before Lightning sees it
    if tree is not None:  # the config built: show it (a bad value stopped above with one line instead)
        import rich

        rich.print(tree)
    params = composed_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(params)

    started, start = now_iso(), time.perf_counter()
    with restore_errors_named(resume_from):  # a file that passed the checks and still does not restore
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)  # data only
    timing = {
        "train_seconds": round(time.perf_counter() - start, 2),
        "train_start": started,
        "train_end": now_iso(),
    }
    best, last = checkpoint_paths(trainer)
    # the validation scores of the best checkpoint: what a sweeper may optimise (never a test score)
    val = trainer.validate(
        module, datamodule=datamodule, ckpt_path=best or last or None, verbose=False, weights_only=True
    )[0]
    if cfg.optimized_metric not in val:
        raise ConfigError(f"optimized_metric={cfg.optimized_metric} is not logged by this model; one of {sorted(val)}")
    tested = (best if cfg.test_ckpt == "best" else "") or last or None
    record = {
        "experiment": cfg.experiment_name,
        "debug_mode": cfg.get("debug_mode"),
        **timing,
        "resumed_from": resume_from,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seed": cfg.seed,
        "precision": str(cfg.trainer.get("precision")),
        "checkpoint": str(tested) if tested else None,
        "optimized_metric": cfg.optimized_metric,
        "objective": float(val[cfg.optimized_metric]),
        **{k: float(v) for k, v in val.items()},
        "provenance": job.provenance,
    }
    outputs = TestOutputs(out, cfg.samples, record, where=True)
    trainer.callbacks.append(outputs)  # metrics.json, scores.npz and samples.png when the test ends
    results = trainer.test(module, datamodule=datamodule, ckpt_path=tested, weights_only=True)[0]

    if not trainer.is_global_zero:
        return {**results, **record}
    publish_final_scores(loggers, params, outputs.metrics, trainer.global_step, out)
    return outputs.metrics


@hydra_app("config")
def main(cfg: DictConfig) -> float:
    """Hydra's task function: one job, recorded in its folder; returns the validation objective to sweepers."""
    with Job(Path(HydraConfig.get().runtime.output_dir)) as job, ddp_children_run_this_job():
        job.objective = train(cfg, job)["objective"]
    return job.objective


if __name__ == "__main__":
    # Call the task function through the imported module, not __main__: Ray and submitit pickle it by
    # reference (mixsep.run.main), and Lightning's DDP children start as `python -m mixsep.run`.
    from mixsep.run import main as task

    task()
