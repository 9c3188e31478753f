"""The configs' schema (mixsep/training/schema.py): a value of the wrong kind stops composition, naming its key;
every preset composes over the schema; what a type cannot say is checked before the run (training/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from mixsep.conf import CONF_DIR
from mixsep.errors import ConfigError
from mixsep.training.config import settled_config
from mixsep.training.schema import TestCkpt

WRONG_KINDS = {  # override: what OmegaConf says the key takes
    "seed=abc": "converted to Integer",
    "model.lr=fast": "converted to Float",
    "data.batch_size=1.5": "converted to Integer",
    "data.train_pairs=all": "converted to Integer",
    "trainer.max_epochs=yes": "converted to Integer",
    "trainer.log_every_n_steps=true": "converted to Integer",
    "model.compile=maybe": "not a valid bool",
    "test_ckpt=middle": "expected one of [best, last]",
}


@pytest.mark.parametrize("override", list(WRONG_KINDS))
def test_a_value_of_the_wrong_kind_stops_composition_naming_its_key(override, compose, tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose("config", [override], tmp_path)
    assert override in str(err.value) and WRONG_KINDS[override] in str(err.value.__cause__)


def test_the_values_are_typed_as_the_signatures_say(compose, tmp_path):
    cfg = compose("config", ["model.lr=1", "trainer.max_epochs=2", "test_ckpt=last"], tmp_path)
    assert cfg.model.lr == 1.0 and isinstance(cfg.model.lr, float) and cfg.trainer.max_epochs == 2
    assert cfg.test_ckpt == "last" and cfg.test_ckpt is TestCkpt.last
    compose("evaluate", ["ckpt_path=x.ckpt", "tta=true", "trainer.precision=32-true"], tmp_path)


PRESETS = [f"model={p.stem}" for p in sorted((Path(CONF_DIR) / "model").glob("[!_]*.yaml"))] + [
    f"experiment={p.relative_to(Path(CONF_DIR) / 'experiment').with_suffix('')}"
    for p in sorted((Path(CONF_DIR) / "experiment").rglob("*.yaml"))
]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_over_the_schema(preset, compose, tmp_path):
    compose("config", [preset], tmp_path)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["model.net.widths=[32,wide]"], "model.net.widths[1]='wide' does not fit ConvSkipDual's widths[1]"),
        (["model=unet", "model.net.width=wide"], "model.net.width='wide' does not fit UNetSeparator's width"),
        (["samples=-1"], "samples=-1 must be a whole number >= 0"),
        (["optimized_metric=test/psnr"], "must be a validation metric"),
        (["trainer.strategy=ddp_spawn"], "trainer.strategy=ddp_spawn is not supported"),
    ],
)
def test_what_a_type_cannot_say_is_checked_before_the_run(overrides, words, compose, tmp_path):
    cfg = compose("config", overrides, tmp_path)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        settled_config(cfg)


def test_a_network_argument_its_signature_does_not_type_is_left_to_the_class(compose, tmp_path):
    settled_config(compose("config", ["model.net.consistency=none"], tmp_path))  # ConvSkipDual's **structure
