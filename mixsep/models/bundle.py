"""A model bundle in the layout model hubs use: ``model.safetensors``, ``config.json`` (the network's registered name
and plain arguments, sources, precision, versions and each file's SHA-256), ``README.md`` (the model card) and, with
``onnx``, ``model.onnx`` (the whole separator, for ONNX Runtime alone); written and read back as one verified thing."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mixsep.errors import CheckpointError
from mixsep.files import write_atomically, write_text_atomically
from mixsep.models.registry import module_of

if TYPE_CHECKING:
    from mixsep.models.saved import SavedModel

BUNDLE_FORMAT = "mixsep-bundle"
FORMAT_VERSION = 2  # 2: config.json records the SHA-256 of the weights and the graph ("files")
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, ONNX_FILE = "model.safetensors", "config.json", "README.md", "model.onnx"
MAX_CONFIG_BYTES = 1 << 20  # a bundle's config.json is about 1.5 kB
AGAIN = "export it again (python -m mixsep.export CKPT DIR [--onnx])"
# config.json's fields as mixsep writes them: their types, and how a line names them
CONFIG_TYPES = {
    "architecture": (str,),
    "arguments": (dict,),
    "settings": (dict, type(None)),
    "sources": (str, type(None)),
    "precision": (str, type(None)),
    "format_version": (int,),
    "files": (dict, type(None)),
    "network_module": (str, type(None)),
}
TYPE_NAMES = {str: "a string", dict: "a mapping", int: "an integer", type(None): "null"}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_json(path: Path, what: str) -> object:
    """A JSON file, its failures (not JSON, nested too deeply, too large) one line naming ``what`` it should be."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path} is {path.stat().st_size:,} bytes: not {what}")
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({str(err)[:160]}): not {what}") from err
    except RecursionError as err:
        raise CheckpointError(f"{path} is nested too deeply to be {what}") from err


def read_bundle_config(folder: Path) -> dict:
    """A bundle's config.json, its fields of the types mixsep writes (CheckpointError otherwise)."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a mixsep model bundle: it has no {CONFIG_FILE}; {AGAIN}")
    config = read_json(path, "a mixsep bundle's config")
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not a mixsep bundle's config (its format is not {BUNDLE_FORMAT})")
    for key, allowed in CONFIG_TYPES.items():
        if not isinstance(config.get(key), allowed) or isinstance(config.get(key), bool):
            wanted = " or ".join(TYPE_NAMES[t] for t in allowed)
            raise CheckpointError(f"{path}: {key} must be {wanted}, not {json.dumps(config.get(key))[:80]}; {AGAIN}")
    return config


def verify_file(folder: Path, config: dict, name: str) -> None:
    """``name`` in ``folder`` is the file exported with config.json: its SHA-256 is the one recorded. A bundle
    of format 1 (mixsep 0.1) recorded none: its weights load unverified (with a warning), its graph not at all."""
    recorded = (config.get("files") or {}).get(name)
    if recorded is None and name == WEIGHTS_FILE and config["format_version"] < FORMAT_VERSION:
        logging.getLogger("mixsep").warning(
            f"{folder} was exported before bundles recorded their files' SHA-256 (format {config['format_version']}):"
            " its weights are read unverified; export it again (python -m mixsep.export) to record them"
        )
        return
    if recorded is None:
        raise CheckpointError(
            f"{folder / name} is not recorded in {CONFIG_FILE} (no SHA-256 for it): nothing says it belongs to "
            f"this bundle; {AGAIN}"
        )
    digest = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(digest, str) or sha256_of(folder / name) != digest.lower():
        raise CheckpointError(
            f"{folder / name} is not the file exported with this bundle (its SHA-256 differs from the one in "
            f"{CONFIG_FILE}): it was replaced or damaged; {AGAIN}"
        )


class ClampedSeparator(nn.Module):
    """Mean images (B, 3, 32, 32) in [0, 1] -> the two sources clamped to [0, 1], as scores see them: the ONNX graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gray, colour = self.net(mix)
        return gray.float().clamp(0, 1), colour.float().clamp(0, 1)


def bundle_config(saved: SavedModel, trained: dict, exported: dict) -> dict:
    """config.json: what rebuilds the network, what it takes and gives, and the code that trained (``trained``: the
    run's provenance, {} when it recorded none) and exported it."""
    image = {"shape": ["batch", 3, 32, 32], "range": [0.0, 1.0]}
    return {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": saved.architecture,
        "network_module": module_of(saved.architecture),  # named to a receiver that lacks it, never imported
        "arguments": saved.arguments,
        "settings": saved.settings,
        "sources": saved.sources,
        "precision": saved.precision,
        "input": {"name": "mix", **image, "dtype": "float32"},
        "outputs": [{"name": "gray", **image}, {"name": "colour", **image}],
        "mixsep_version": trained.get("mixsep_version") or exported.get("mixsep_version"),
        "commit": trained.get("git_commit"),
        "exported_from": saved.path.name,
        "exported_with": {k: exported.get(k) for k in ("mixsep_version", "git_commit", "torch_version")},
    }


def write_onnx(net: nn.Module, path: Path) -> None:
    """The separator as one ONNX graph (torch.onnx's exporter, from torch.export), any batch size."""
    graph = ClampedSeparator(net.float().to(memory_format=torch.contiguous_format)).eval()
    batch = {"mix": {0: torch.export.Dim("batch")}}

    def export(tmp: Path) -> None:
        program = torch.onnx.export(
            graph,
            (torch.rand(2, 3, 32, 32),),
            None,
            input_names=["mix"],
            output_names=["gray", "colour"],
            dynamic_shapes=batch,
            dynamo=True,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)  # over the file write_atomically made: its permissions kept

    write_atomically(path, export)


def write_bundle(saved: SavedModel, net: nn.Module, folder: Path, config: dict, graph: nn.Module | None) -> None:
    """The weights, (``graph``: the separator to export) model.onnx and config.json, which records their SHA-256 and
    sizes, each written whole or not at all with the permissions ``open()`` gives; the card comes later."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    # contiguous copies: a channels-last run's weights are strided, and safetensors stores dense tensors
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    metadata = {"format": "pt", "mixsep_architecture": saved.architecture}
    write_atomically(folder / WEIGHTS_FILE, lambda tmp: tmp.write_bytes(save(weights, metadata=metadata)))
    if graph is not None:
        write_onnx(graph, folder / ONNX_FILE)
    names = [WEIGHTS_FILE] + ([ONNX_FILE] if graph is not None else [])
    files = {name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size} for name in names}
    write_text_atomically(folder / CONFIG_FILE, json.dumps({**config, "files": files}, indent=2) + "\n")
