"""mixsep/adapters.py: each call into another library's private code, held to the behaviour mixsep relies on. A
failure here names the library and version whose upgrade changed it: adapt that one function."""

from __future__ import annotations

import importlib.metadata
import signal

import pytest
from omegaconf import OmegaConf

from mixsep.adapters import apply_overrides, hydra_arguments, submitit_warning_signal


def changed(distribution: str, what: str) -> str:
    return f"{distribution} {importlib.metadata.version(distribution)} changed {what}: adapt mixsep/adapters.py"


def test_hydras_command_line_parser_reads_its_flags_and_the_overrides_among_them():
    args = hydra_arguments(["model=unet", "--cfg", "job", "-p", "trainer", "-m", "seed=1", "-cd", "mine"])
    got = (args.cfg, args.package, args.multirun, args.config_dir, args.overrides)
    assert got == ("job", "trainer", True, "mine", ["model=unet", "seed=1"]), changed("hydra-core", "its parser")
    plain = hydra_arguments(["--info", "searchpath", "--config-name", "evaluate", "--resolve"])
    assert (plain.info, plain.config_name, plain.resolve, plain.overrides) == ("searchpath", "evaluate", True, []), (
        changed("hydra-core", "its parser")
    )


def test_value_overrides_apply_to_a_composed_config_as_hydras_compose_applies_them():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException

    config = OmegaConf.create({"trainer": {"max_epochs": 10, "devices": 1}, "seed": 0})
    OmegaConf.set_struct(config, True)
    overrides = OverridesParser.create().parse_overrides(["trainer.max_epochs=3", "+trainer.extra=x", "~seed"])
    apply_overrides(overrides, config)
    expected = {"trainer": {"max_epochs": 3, "devices": 1, "extra": "x"}}
    assert OmegaConf.to_container(config) == expected, changed("hydra-core", "how overrides apply")
    unknown = OverridesParser.create().parse_overrides(["trainer.max_epocs=3"])
    with pytest.raises(ConfigCompositionException, match="Could not override 'trainer.max_epocs'"):
        apply_overrides(unknown, config)


def test_submitits_warning_signal_is_the_one_its_jobs_are_sent():
    submitit = pytest.importorskip("submitit")
    expected = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)  # USR2 unless SUBMITIT_PREEMPT_SIGNAL
    assert submitit_warning_signal() == expected, changed("submitit", "its warning signal")


def test_mlflow_params_flatten_to_the_keys_lightnings_logger_writes():
    from lightning.fabric.utilities.logger import _flatten_dict

    from mixsep.training.loggers import flat_params

    params = {"model": {"lr": 1e-3, "net": {"widths": [8, 16]}}, "extensions": [], "cbs": [{"a": 1}, {"b": 2}]}
    assert flat_params(params) == _flatten_dict(params), changed("lightning", "how loggers flatten hyperparameters")
