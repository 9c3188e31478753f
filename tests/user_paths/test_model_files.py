"""Model files from elsewhere are data: crafted files that would run code when read (a pickle that calls
something, a network that names another callable, an allowed network whose arguments hide one) are refused by
every reader (load_separator, separate, evaluate, run's ckpt_path=, model.net.pretrained_weights, export) in one
``mixsep:`` line, and nothing in them runs (no marker file appears). Each crafted file is first shown to be live:
read the way the old code read it, it does write its marker."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from mixsep.errors import CheckpointError, MixsepError
from tests.helpers import PROJECT_ROOT, TINY_SIZES, run_in_this_process

SHIPPED_CKPT = PROJECT_ROOT / "results" / "best_cpu_range" / "model.ckpt"


class WritesMarker:
    """Unpickled (by a full unpickler), it calls ``open(marker, "w")``: a file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def opener(marker: Path) -> dict:
    """A config node that Hydra's instantiate turns into ``open(marker, "w")``."""
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def training_checkpoint() -> dict:
    """The shipped model as a whole training checkpoint (what run's ckpt_path= takes)."""
    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    return {**ckpt, "optimizer_states": [], "loops": {}, "epoch": 0, "global_step": 0}


def crafted(kind: str, folder: Path, marker: Path) -> Path:
    ckpt = training_checkpoint()
    if kind == "pickle-runs-code":
        ckpt["extra"] = WritesMarker(marker)
    elif kind == "network-is-a-callable":
        ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], "net": opener(marker)}
    elif kind == "callable-in-arguments":
        net = {**ckpt["hyper_parameters"]["net"], "width": opener(marker)}
        ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], "net": net}
    elif kind == "bundle-network-is-a-callable":  # a bundle whose config.json names a callable
        from mixsep.export import export_bundle

        bundle = folder / "bundle"
        export_bundle(SHIPPED_CKPT, bundle)
        config = json.loads((bundle / "config.json").read_text())
        config["architecture"], config["arguments"] = "builtins.open", {"file": str(marker), "mode": "w"}
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle
    path = folder / f"{kind}.ckpt"
    torch.save(ckpt, path)
    return path


KINDS = ["pickle-runs-code", "network-is-a-callable", "callable-in-arguments", "bundle-network-is-a-callable"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("crafted")
    made = {}
    for kind in KINDS:
        marker = folder / f"{kind}.marker"
        made[kind] = (crafted(kind, folder, marker), marker)
    return made


@pytest.mark.parametrize("kind", KINDS[:3])
def test_each_crafted_file_runs_code_when_read_the_old_way(kind, files):
    """The crafted files are live: the old readers (full unpickling, Hydra's instantiate) write the marker."""
    from hydra.utils import instantiate

    path, marker = files[kind]
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if kind != "pickle-runs-code":
        with contextlib.suppress(Exception):  # the call has run by the time the network fails to build
            instantiate(ckpt["hyper_parameters"]["net"])
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("kind", KINDS)
def test_load_separator_refuses_each_crafted_file_and_runs_nothing(kind, files):
    from mixsep import load_separator
    from mixsep.models.separator import load_module

    path, marker = files[kind]
    for load in (load_separator, load_module):
        with pytest.raises(CheckpointError) as refused:
            load(path)
        assert "\n" not in str(refused.value) and "nothing" in str(refused.value)
    assert not marker.exists()


def commands(path: Path, tmp: Path) -> dict[str, list[str]]:
    image = tmp / "mix.png"
    if not image.exists():
        from PIL import Image

        Image.new("RGB", (32, 32), (90, 120, 60)).save(image)
    return {
        "separate": ["python", "-m", "mixsep.separate", str(image), "--model", str(path), "--out", str(tmp / "s")],
        "evaluate": ["python", "-m", "mixsep.evaluate", f"ckpt_path={path}", f"hydra.run.dir={tmp / 'e'}"],
        "run-ckpt_path": [
            "python",
            "-m",
            "mixsep.run",
            *TINY_SIZES,
            "trainer.max_epochs=1",
            f"ckpt_path={path}",
            f"hydra.run.dir={tmp / 'r'}",
        ],
        "export": ["python", "-m", "mixsep.export", str(path), str(tmp / "b")],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["separate", "evaluate", "run-ckpt_path", "export"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_command_refuses_each_crafted_file_in_one_line(
    kind, command, files, tiny_root, tmp_path, capfd, monkeypatch
):
    path, marker = files[kind]
    monkeypatch.setenv("MIXSEP_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("MIXSEP_CACHE_DIR", str(tmp_path / "cache"))
    capfd.readouterr()
    status = run_in_this_process(commands(path, tmp_path)[command])
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("mixsep: ")]
    assert status != 0 and len(lines) == 1, err[-3000:]
    assert "Traceback" not in out + err
    assert not marker.exists()


def test_pretrained_weights_that_run_code_are_refused_unread(tmp_path):
    """model.net.pretrained_weights: a ResNet18 state dict with a pickled call in it."""
    from torchvision.models import resnet18

    from mixsep.models.resnet import ResNetSkipDual

    marker = tmp_path / "pretrained.marker"
    state = dict(resnet18(weights=None).state_dict())
    state["extra"] = WritesMarker(marker)
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    with pytest.raises(MixsepError, match="nothing in it was run") as refused:
        ResNetSkipDual(pretrained_weights=str(path))
    assert "\n" not in str(refused.value) and not marker.exists()
    torch.load(path, weights_only=False)  # the file is live: the full unpickler writes the marker
    assert marker.exists()


def network_named(key: str, name: str) -> dict:
    """The shipped checkpoint, its network named ``name`` under ``key``."""
    ckpt = training_checkpoint()
    arguments = {k: v for k, v in ckpt["hyper_parameters"]["net"].items() if k != "_target_"}
    ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], "net": {key: name, **arguments}}
    return ckpt


@pytest.mark.parametrize(
    "key, name",
    [
        ("_target_", "somewhere_else.UNetSeparator"),  # another package's path, with a mixsep class name
        ("name", "mixsep.models.UNetSeparator"),  # the name key holds registered names, never a path
        ("name", "builtins.open"),
    ],
)
def test_a_checkpoint_names_its_network_by_a_path_not_in_the_allowlist_refused_by_name(tmp_path, key, name):
    path = tmp_path / "elsewhere.ckpt"
    torch.save(network_named(key, name), path)
    from mixsep import load_separator

    with pytest.raises(CheckpointError, match="not a registered network"):
        load_separator(path)


@pytest.mark.parametrize(
    "key, name",
    [("name", "UNetSeparator"), ("_target_", "UNetSeparator"), ("_target_", "mixsep.models.unet.UNetSeparator")],
)
def test_a_checkpoint_naming_its_network_as_any_mixsep_version_wrote_it_loads_the_same(tmp_path, key, name):
    """The name key new checkpoints write, and the ``_target_`` earlier ones wrote (the shipped one:
    ``mixsep.models.UNetSeparator``)."""
    from mixsep import load_separator

    path = tmp_path / "named.ckpt"
    torch.save(network_named(key, name), path)
    mix = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_separator(path)(mix)[0], load_separator(SHIPPED_CKPT)(mix)[0])
