"""``python -m mixsep.evaluate ckpt_path=PATH``: metrics.json + samples.png for a checkpoint or a model bundle.

Scores on the same fixed test pairs as ``mixsep.run`` (``data.test_pairs``, default all 10,000).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mixsep.errors import ConfigError, one_line_errors
from mixsep.models.separator import load_module
from mixsep.record.provenance import provenance
from mixsep.training.build import build, build_trainer
from mixsep.training.callbacks import TestOutputs
from mixsep.training.command_line import hydra_app
from mixsep.training.config import precision_from_file, settled_config

log = logging.getLogger("mixsep")


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError(
            "mixsep.evaluate needs a model: ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt, or a bundle "
            "folder (ckpt_path=results/best_cpu, a shipped model)"
        )
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = load_module(cfg.ckpt_path)
    saved = module.mixsep_saved  # what the file says it was trained on and tested at
    for key in ("tta", "tta_color"):  # null: as the checkpoint's run validated and tested
        if cfg.get(key) is not None:
            module.hparams[key] = bool(cfg[key])
    if hasattr(module, "use_test_time_ensemble"):  # a separator (not an earlier report's one-image system)
        h = module.hparams
        module.use_test_time_ensemble(h.get("tta", False), h.get("tta_color", False), bool(cfg.get("tta_shift")))
    datamodule = build(cfg.data)
    if saved.sources != datamodule.sources:
        log.warning(
            f"evaluate: {cfg.ckpt_path} was trained on {saved.sources} and is scored here on {datamodule.sources} "
            "(data/gray=, data/color= choose the test sources); metrics.json records both"
        )
    # a file's precision enters the config only as one of Lightning's settings: its strings are never resolved
    from_file = precision_from_file(saved.precision, saved.path) if cfg.trainer.get("precision") is None else None
    cfg = settled_config(cfg, default_precision=from_file)
    record = {"experiment": cfg.experiment_name, "checkpoint": str(cfg.ckpt_path), "precision": cfg.trainer.precision}
    record.update(trained_on=saved.sources, tta_shift=bool(cfg.get("tta_shift")), provenance=provenance())
    outputs = TestOutputs(out, cfg.samples, record)  # metrics.json, scores.npz and samples.png
    build_trainer(cfg.trainer, callbacks=[outputs], loggers=[]).test(module, datamodule=datamodule)
    return outputs.metrics


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    main()
