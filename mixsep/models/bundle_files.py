"""A model bundle's files read as one verified thing: ``config.json`` (checked JSON of the expected shape) and the
SHA-256 it records of ``model.safetensors`` and ``model.onnx`` (a file that is not the one exported with it is
refused). Every failure is one CheckpointError line. Opening the graph: ``onnx_graph.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mixsep.errors import CheckpointError

BUNDLE_FORMAT = "mixsep-bundle"
FORMAT_VERSION = 2  # 2: config.json records the SHA-256 of the weights and the graph ("files")
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, ONNX_FILE = "model.safetensors", "config.json", "README.md", "model.onnx"
MAX_CONFIG_BYTES = 1 << 20  # a bundle's config.json is about 1.5 kB
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
TYPE_NAMES = {str: "a string", dict: "a mapping", int: "an integer", type(None): "null"}
AGAIN = "export it again (python -m mixsep.export CKPT DIR [--onnx])"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_records(folder: Path, names: list[str]) -> dict[str, dict]:
    """config.json's ``files``: each file's SHA-256 and size in bytes."""
    return {name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size} for name in names}


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
    kinds = {
        "architecture": (str,),
        "arguments": (dict,),
        "settings": (dict, type(None)),
        "sources": (str, type(None)),
        "precision": (str, type(None)),
        "format_version": (int,),
        "files": (dict, type(None)),
        "network_module": (str, type(None)),
    }
    for key, allowed in kinds.items():
        if not isinstance(config.get(key), allowed) or isinstance(config.get(key), bool):
            wanted = " or ".join(TYPE_NAMES[t] for t in allowed)
            raise CheckpointError(f"{path}: {key} must be {wanted}, not {json.dumps(config.get(key))[:80]}; {AGAIN}")
    module = config.get("network_module")
    if module is not None and not MODULE_NAME.fullmatch(module[:200]):
        raise CheckpointError(f"{path}: network_module {module[:80]!r} is not a Python module name; {AGAIN}")
    return config


def verify_file(folder: Path, config: dict, name: str) -> None:
    """``name`` in ``folder`` is the file exported with config.json: its SHA-256 is the one recorded. A bundle
    of format 1 (mixsep 0.1, before hashes were recorded) has none: its weights load unverified, its graph not
    at all (nothing ties it to the weights)."""
    recorded = (config.get("files") or {}).get(name)
    if recorded is None and name == WEIGHTS_FILE and config["format_version"] < FORMAT_VERSION:
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


def network_module(config: dict) -> str | None:
    return config.get("network_module")
