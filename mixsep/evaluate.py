"""``python -m mixsep.evaluate ckpt_path=PATH``: metrics.json + samples.png for a checkpoint.

Scores on the same fixed test pairs as ``mixsep.run`` (``data.test_pairs``, default all 10,000).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mixsep.artifacts import write_test_outputs
from mixsep.errors import ConfigError, one_line_errors
from mixsep.hardware import build_trainer, resolve_precision
from mixsep.models.tta import ShiftEnsemble
from mixsep.provenance import provenance
from mixsep.separator import checkpoint_precision, checkpoint_sources, load_module
from mixsep.task import build, check_command_line


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError(
            "mixsep.evaluate needs a checkpoint: ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt "
            "(or results/best_cpu/model.ckpt, the shipped model)"
        )
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = load_module(cfg.ckpt_path)
    for key in ("tta", "tta_color"):  # score with (or without) a self-ensemble
        if cfg.get(key) is not None:
            module.hparams[key] = bool(cfg[key])
    if cfg.get("tta_shift"):  # an evaluation wrapper: the checkpoint's network is unchanged
        module.net = ShiftEnsemble(module.net)
    datamodule = build(cfg.data)
    if cfg.trainer.precision is None:
        cfg.trainer.precision = checkpoint_precision(cfg.ckpt_path)
    precision = cfg.trainer.precision = resolve_precision(cfg.trainer)
    trainer = build_trainer(cfg.trainer, callbacks=[], loggers=[])
    results = trainer.test(module, datamodule=datamodule)[0]
    metrics = write_test_outputs(
        out,
        results,
        module,
        datamodule,
        cfg.samples,
        experiment=cfg.experiment_name,
        checkpoint=str(cfg.ckpt_path),
        precision=precision,
        trained_on=checkpoint_sources(cfg.ckpt_path),
        tta_shift=bool(cfg.get("tta_shift")),
        provenance=provenance(),
    )
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    check_command_line(sys.argv[1:], config_name="evaluate")
    main()
