"""mixsep/adapters.py: each call into another library's private code, held to the behaviour mixsep relies on. A
failure here names the library and version whose upgrade changed it: adapt that one function."""

from __future__ import annotations

import importlib.metadata

import pytest
from omegaconf import OmegaConf

from mixsep.adapters import drop_wandb_init_argument, forget_wandb_run, hydra_arguments


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


def test_hydras_refusals_carry_what_the_one_line_errors_read(tmp_path):
    """training/command_line.refusal reads Hydra's exceptions and messages: a missing option's group and options, a
    config that a plugin not installed would register, the target and key of an import that failed, and the
    warning that a ``hydra.searchpath`` folder is not there."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import InstantiationException, MissingConfigException
    from hydra.utils import instantiate

    from mixsep.conf import CONF_DIR
    from mixsep.training.command_line import refusal

    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "mine.yaml").write_text("defaults:\n  - nowhere_slurm\n")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        with pytest.raises(MissingConfigException) as missing:
            compose(config_name="config", overrides=["model=bogus"])
        with pytest.raises(MissingConfigException) as plugin:
            compose(
                "config", [f"hydra.searchpath=[file://{tmp_path}]", "hydra/launcher=mine"], return_hydra_config=True
            )
        with pytest.warns(
            UserWarning, match="^provider=hydra.searchpath in command-line, path=nowhere is not available"
        ):
            compose(config_name="config", overrides=["hydra.searchpath=[file://nowhere]"])
    assert missing.value.missing_cfg_file == "model/bogus" and "unet" in missing.value.options, changed(
        "hydra-core", "MissingConfigException"
    )
    assert refusal(plugin.value) == (
        "hydra/launcher=mine needs hydra-nowhere-launcher, which is not installed: pip install hydra-nowhere-launcher"
    ), changed("hydra-core", f"how a config missing from a defaults list is said: {plugin.value}")
    with pytest.raises(InstantiationException) as located:
        instantiate(OmegaConf.create({"search": {"pruner": {"_target_": "bogus.Pruner"}}}).search.pruner)
    line = refusal(located.value)
    assert line is not None and line.startswith("search.pruner._target_=bogus.Pruner is no class"), changed(
        "hydra-core", f"how instantiate says a target is not found: {located.value}"
    )


def test_lightnings_wandb_logger_keeps_the_arguments_it_passes_to_wandb_init(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="mixsep-test", save_dir=str(tmp_path))
    assert "anonymous" in logger._wandb_init, changed("lightning", "the arguments its WandbLogger keeps for wandb.init")
    drop_wandb_init_argument(logger, "anonymous")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "mixsep-test"


def test_a_forgotten_wandb_run_leaves_no_run_and_a_new_one_starts(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.init(project="mixsep-test", dir=str(tmp_path), id="forget01")
    forget_wandb_run()
    assert wandb.run is None, changed("wandb", "the globals of a run (wandb.sdk.lib.module.unset_globals)")
    run = wandb.init(project="mixsep-test", dir=str(tmp_path), id="forget02")
    run.log({"x": 1.0})
    run.finish()
    assert list(tmp_path.glob("wandb/offline-run-*-forget02/run-forget02.wandb"))
