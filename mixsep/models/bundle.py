"""A model bundle in the layout model hubs use: ``model.safetensors`` (the network's weights), ``config.json``
(its architecture and plain arguments, the sources, the precision, the versions), ``README.md`` (the model card,
``report/card.py``) and, with ``onnx``, ``model.onnx`` (the whole separator, structure head included, for ONNX
Runtime alone). config.json records each file's SHA-256 (``files``), so the bundle is read back
(``saved.read_bundle``, ``onnx_graph.open_onnx``) as one verified thing; every file is written with the
permissions ``open()`` gives a new file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from mixsep.files import write_atomically, write_text_atomically
from mixsep.models.bundle_files import (
    BUNDLE_FORMAT,
    CARD_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    ONNX_FILE,
    WEIGHTS_FILE,
    file_records,
)
from mixsep.models.registry import module_of
from mixsep.models.saved import SavedModel


class ClampedSeparator(nn.Module):
    """A separator as a user calls it: mean images (B, 3, 32, 32) in [0, 1] -> the two sources clamped to
    [0, 1] (what every score and picture uses); the ONNX graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gray, colour = self.net(mix)
        return gray.float().clamp(0, 1), colour.float().clamp(0, 1)


def bundle_config(saved: SavedModel, trained: dict, exported: dict) -> dict:
    """config.json: everything needed to rebuild the network, what it expects and gives back, and which code
    trained it (``trained``: the run's provenance, {} when it recorded none) and exported it."""
    return {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": saved.architecture,
        "network_module": module_of(saved.architecture),  # named to a receiver that lacks it, never imported
        "arguments": saved.arguments,
        "settings": saved.settings,
        "sources": saved.sources,
        "precision": saved.precision,
        "input": {"name": "mix", "shape": ["batch", 3, 32, 32], "dtype": "float32", "range": [0.0, 1.0]},
        "outputs": [
            {"name": "gray", "shape": ["batch", 3, 32, 32], "range": [0.0, 1.0]},
            {"name": "colour", "shape": ["batch", 3, 32, 32], "range": [0.0, 1.0]},
        ],
        "mixsep_version": trained.get("mixsep_version") or exported.get("mixsep_version"),
        "commit": trained.get("git_commit"),
        "exported_from": saved.path.name,
        "exported_with": {k: exported.get(k) for k in ("mixsep_version", "git_commit", "torch_version")},
    }


def write_weights(net: nn.Module, path: Path, saved: SavedModel) -> None:
    from safetensors.torch import save

    # contiguous copies: a channels-last run's weights are strided, and safetensors stores dense tensors
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    metadata = {"format": "pt", "mixsep_architecture": saved.architecture}
    # bytes written into the temporary file write_atomically made (save_file would create its own, private one)
    write_atomically(path, lambda tmp: tmp.write_bytes(save(weights, metadata=metadata)))


def write_onnx(net: nn.Module, path: Path) -> None:
    """The separator as one ONNX graph (torch.onnx's exporter, from torch.export), any batch size."""
    graph = ClampedSeparator(net.float().to(memory_format=torch.contiguous_format)).eval()
    example = torch.rand(2, 3, 32, 32)

    def export(tmp: Path) -> None:
        program = torch.onnx.export(
            graph,
            (example,),
            None,
            input_names=["mix"],
            output_names=["gray", "colour"],
            dynamic_shapes={"mix": {0: torch.export.Dim("batch")}},
            dynamo=True,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)  # over the file write_atomically made: its permissions kept

    write_atomically(path, export)


def write_bundle(saved: SavedModel, net: nn.Module, folder: Path, config: dict, graph: nn.Module | None) -> None:
    """The bundle's weights, (``graph``: the separator to export) model.onnx and config.json, which records their
    SHA-256, in ``folder``, each written whole or not at all; the card comes last (``write_card``), as it lists
    their sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    write_weights(net, folder / WEIGHTS_FILE, saved)
    if graph is not None:
        write_onnx(graph, folder / ONNX_FILE)
    files = file_records(folder, [WEIGHTS_FILE] + ([ONNX_FILE] if graph is not None else []))
    text = json.dumps({**config, "files": files}, indent=2) + "\n"
    write_text_atomically(folder / CONFIG_FILE, text)


def write_card(folder: Path, card: str) -> None:
    write_text_atomically(folder / CARD_FILE, card)
