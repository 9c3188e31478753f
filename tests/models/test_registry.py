"""One way to register: mixsep's own networks, sources and scores are declared as a user's are
(``@register_network``, ``@register_source``, ``register_score``); a network is named by its registered name under
``model.net.name`` (files written before: under ``_target_``), and importing mixsep imports no family it does not
build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch import nn

from mixsep.conf import CONF_DIR
from mixsep.errors import ConfigError
from mixsep.models.registry import BUILT_IN, NETWORKS, architecture, network_spec, register_network

FAMILIES = sorted(set(BUILT_IN.values()))


def test_importing_the_commands_imports_no_network_family():
    """Every command's modules, and a load of the shipped U-Net: the ResNet families (and torchvision, which
    only they need beyond torchmetrics' own import) are imported only when built."""
    code = (
        "import sys\n"
        "import mixsep, mixsep.models, mixsep.models.separator, mixsep.separate\n"
        "assert 'torchvision' not in sys.modules, 'torchvision'\n"
        "mixsep.load_separator()\n"
        "import mixsep.run, mixsep.evaluate, mixsep.export\n"
        "print(sorted(name for name in sys.modules if name in " + repr(FAMILIES) + "))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "['mixsep.models.unet']"  # the shipped model's family alone


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_each_built_in_network_is_declared_with_register_network_where_the_table_says(name):
    cls = architecture(name)
    assert NETWORKS[name] is cls and cls.__module__ == BUILT_IN[name] and cls.__name__ == name


def test_a_name_taken_by_a_built_in_or_another_class_is_refused_and_the_same_class_again_is_not():
    with pytest.raises(ConfigError, match="a network named ResNetDual is already registered"):
        register_network(type("ResNetDual", (nn.Module,), {"__module__": "their_lab.nets"}))
    mine = type("MineOnce", (nn.Module,), {"__module__": "my_lab.nets"})
    try:
        assert register_network(mine) is mine
        assert register_network(type("MineOnce", (nn.Module,), {"__module__": "my_lab.nets"}))  # imported again
        with pytest.raises(ConfigError, match="already registered"):
            register_network(type("MineOnce", (nn.Module,), {"__module__": "other_lab.nets"}))
    finally:
        NETWORKS.pop("MineOnce", None)


def test_a_network_taking_the_argument_that_names_it_is_refused():
    class Named(nn.Module):
        def __init__(self, name: str = "x") -> None:
            super().__init__()

    with pytest.raises(ConfigError, match="takes an argument 'name', the key that names it"):
        register_network(Named)


@pytest.mark.parametrize(
    "net",
    [
        {"name": "UNetSeparator", "width": 8},
        {"_target_": "UNetSeparator", "width": 8},  # a checkpoint written before
        {"_target_": "mixsep.models.UNetSeparator", "width": 8},
        {"_target_": "mixsep.models.unet.UNetSeparator", "width": 8},
    ],
)
def test_a_network_is_read_by_its_name_or_as_earlier_files_wrote_it(net):
    assert network_spec(net) == ("UNetSeparator", {"width": 8})


@pytest.mark.parametrize(
    "net, words",
    [
        ({"name": "mixsep.models.UNetSeparator"}, "not a registered network: UNetSeparator"),  # never a path
        ({"name": "Bogus"}, "'Bogus', which is not a registered network"),
        ({"_target_": "elsewhere.UNetSeparator"}, "not a registered network"),
        ({"name": "UNetSeparator", "_target_": "builtins.open"}, "holds '_target_'"),
    ],
)
def test_anything_else_is_refused_in_one_line(net, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as refused:
        network_spec(net)
    assert "\n" not in str(refused.value)


def test_a_config_naming_its_network_by_hydras_target_is_told_the_key():
    from mixsep.training.schema import check_network

    net = OmegaConf.create({"_target_": "mixsep.models.UNetSeparator", "width": 8})
    with pytest.raises(ConfigError, match=r"under _target_ \(mixsep.models.UNetSeparator\).*model.net.name=UNet"):
        check_network(net)


def test_the_built_in_sources_and_scores_are_declared_as_a_users_are():
    """Each data/<kind>/<option>.yaml builds a class that @register_source declared for that option; the
    built-in scores are register_score's."""
    from mixsep.data.sources import SOURCE_CLASSES
    from mixsep.models.metrics import PSNR, SCORES, SSIM

    for yaml in sorted(Path(CONF_DIR, "data").glob("*/*.yaml")):
        node = OmegaConf.load(yaml)
        kind, option = yaml.parent.name, node.name
        assert f"{SOURCE_CLASSES[kind][option].__module__}.{SOURCE_CLASSES[kind][option].__name__}" == node._target_
    assert SCORES["psnr"] is PSNR and SCORES["ssim"] is SSIM


@pytest.mark.parametrize(
    "overrides, batch",
    [
        (["model=unet"], 32),  # the family's recipe
        (["model=conv_dual_bottleneck"], 256),  # a family without one
        (["model=mean_ae"], 64),
        (["experiment=best_cpu_v1"], 128),  # a preset's data.batch_size wins over its family's
        (["model=unet", "data.batch_size=64"], 64),
    ],
)
def test_each_family_gives_its_recipes_batch_size_to_the_data(compose, tmp_path, overrides, batch):
    cfg = compose("config", overrides, tmp_path)
    assert cfg.data.batch_size == batch and "batch_size" not in cfg.model
