"""Reading a trained model from a file someone may have sent: a Lightning checkpoint (``.ckpt``) or a bundle folder
(``bundle.py``). Nothing read runs code: checkpoints go through PyTorch's weights-only unpickler, bundles hold
safetensors and JSON, and the network is looked up among the registered ones (``registry.py``) with plain arguments.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import register_module_module_registration_hook

from mixsep.data.sources import DEFAULT_SOURCES
from mixsep.errors import CheckpointError, ConfigError
from mixsep.models.bundle import AGAIN, WEIGHTS_FILE, read_bundle_config, verify_file
from mixsep.models.registry import NAME_KEY, OLD_NAME_KEY, architecture, check_plain, is_registered, network_spec

# settings a file may not set when it is loaded: they name or read other files on the receiver's machine
NOT_FROM_FILES = ("pretrained_weights",)
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
MAX_HEADER_BYTES = 1 << 20  # a mixsep network's safetensors header is about 10 kB
MIXSEP_FILE = "Use a .ckpt that mixsep.run wrote, or a bundle from python -m mixsep.export."


@dataclass
class SavedModel:
    """A model file's checked contents: its network, the module's other settings, weights (``net.*``), sources."""

    path: Path
    architecture: str
    arguments: dict
    settings: dict  # the module's hyper-parameters besides the network (name, lr, loss, tta, ...)
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    precision: str = "32-true"
    sources: str = DEFAULT_SOURCES

    @property
    def net_config(self) -> dict:
        return {NAME_KEY: self.architecture, **self.arguments}

    @property
    def hyper_parameters(self) -> dict:
        return {**self.settings, "net": self.net_config}

    def net_state_dict(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("net."): v for k, v in self.state_dict.items() if k.startswith("net.")}


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """The model in ``path``, a checkpoint file or a bundle folder (one-line CheckpointErrors otherwise)."""
    check_device(map_location)
    path = Path(path)
    if path.is_dir():
        return read_bundle(path, map_location)
    if not path.is_file():
        raise CheckpointError(
            f"No model at {path}. Pass a bundle folder (python -m mixsep.export writes one) or a .ckpt written by "
            "mixsep.run (<run dir>/checkpoints/last.ckpt or best-*.ckpt)."
        )
    return checkpoint_model(path, read_checkpoint(path, map_location))


def checkpoint_model(path: Path, ckpt: dict) -> SavedModel:
    """The checked model in a checkpoint already read (``read_checkpoint``)."""
    hparams, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    if not isinstance(hparams, dict) or not isinstance(state, dict) or "net" not in hparams:
        raise CheckpointError(
            f"{path} is a checkpoint without a mixsep network's settings and weights: it comes from another "
            f"program. {MIXSEP_FILE}"
        )
    module = ckpt.get("mixsep_network_module")
    saved = _checked(path, hparams, ckpt.get("mixsep_precision"), ckpt.get("mixsep_sources"), module)
    if not all(isinstance(name, str) for name in state):
        raise CheckpointError(f"{path}: its weights are not a mapping of names to tensors")
    for name, tensor in state.items():
        check_stored(path, name, tensor)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    dtypes = check_fits(saved, {name: tuple(tensor.shape) for name, tensor in weights.items()})
    saved.state_dict = {**state, **{f"net.{k}": v for k, v in checked_values(saved, weights, dtypes).items()}}
    return saved


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint through PyTorch's weights-only unpickler (plain data and tensors; nothing in it runs)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines()
        what = next((line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line), "refused")
        raise CheckpointError(
            f"{path} holds pickled objects that are not plain data ({what[:160]}): mixsep reads only weights and "
            "plain settings, so it ran nothing from this file and will not load it. Ask its author for a bundle "
            "(python -m mixsep.export CKPT DIR)."
        ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({first_line(err)}); it may be truncated or come from another "
            "program. Use a .ckpt that mixsep.run wrote."
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a mixsep checkpoint.")
    return ckpt


def read_bundle(folder: Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """A bundle's model: settings against the shapes its header declares, then its SHA-256, then the weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_bundle_config(folder)
    hparams = {**(config.get("settings") or {}), "net": {NAME_KEY: config["architecture"], **config["arguments"]}}
    saved = _checked(folder, hparams, config.get("precision"), config.get("sources"), config.get("network_module"))
    path = folder / WEIGHTS_FILE
    if not path.is_file():  # a folder, a FIFO or a device would be opened (and block) below
        raise CheckpointError(
            f"{folder} is not a mixsep model bundle: it needs {WEIGHTS_FILE} as a file (python -m mixsep.export "
            "CKPT DIR writes it)"
        )
    dtypes = check_fits(saved, declared_shapes(path))
    verify_file(folder, config, WEIGHTS_FILE)
    try:
        weights = load_file(path, device=str(map_location))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(err)}); {AGAIN}") from err
    saved.state_dict = {f"net.{k}": v for k, v in checked_values(saved, weights, dtypes).items()}
    return saved


def declared_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape as a safetensors header declares it (8 bytes of length, then JSON), read alone:
    safetensors' reader maps the whole file, which for one declaring gigabytes is itself the harm."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"a header of {length:,} bytes")
            header = json.loads(f.read(length))
        shapes = {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
        if not all(isinstance(n, int) and n >= 0 for shape in shapes.values() for n in shape):
            raise ValueError("a shape that is not a list of sizes")
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(err)}); {AGAIN}") from err
    return shapes


def check_fits(saved: SavedModel, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.dtype]:
    """The network the settings describe holds exactly the file's tensors (``shapes``), found before anything is
    allocated: no empty tensor, no setting above the tensors' count or largest dimension, then the network built on
    the meta device (no more modules than tensors) and given ``shapes`` (strict). The network's dtype per tensor."""
    empty = next((name for name, shape in shapes.items() if math.prod(shape) == 0), None)
    if empty is not None:
        raise CheckpointError(
            f"{saved.path}: its weight {empty[:80]} holds no elements (shape {list(shapes[empty])[:8]}): a mixsep "
            "network has no empty tensors, so these are not weights mixsep wrote, and nothing was built. Use a model "
            "file that mixsep wrote."
        )
    bound = max([len(shapes), *(max(shape, default=1) for shape in shapes.values())])
    for key, value in saved.arguments.items():
        if _largest(value) > bound:
            raise CheckpointError(
                f"{saved.path}: its network's {key}={str(value)[:40]} is larger than anything its weights hold "
                f"({len(shapes)} tensors, none with a dimension above {bound}): its settings do not describe its "
                "weights, and nothing was built. Use a model file that mixsep wrote."
            )
    try:
        with torch.device("meta"), _at_most_modules(2 * len(shapes) + 64):
            net = architecture(saved.architecture)(**saved.arguments)
            net.load_state_dict({name: torch.empty(shape) for name, shape in shapes.items()})
    except Exception as err:
        raise does_not_fit(saved.path, err) from err
    return {name: tensor.dtype for name, tensor in net.state_dict().items()}


@contextmanager
def _at_most_modules(limit: int) -> Iterator[None]:
    """Building more than ``limit`` submodules stops (ValueError): a setting within a file's largest dimension can
    still ask for millions, each a Python object even on the meta device."""
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise ValueError(f"more than {limit:,} modules for the file's tensors")

    handle = register_module_module_registration_hook(counted)
    try:
        yield
    finally:
        handle.remove()


def checked_values(
    saved: SavedModel, weights: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype]
) -> dict[str, torch.Tensor]:
    """The weights, of the network's dtypes (floating ones in float32, converted with a note) and all finite."""
    for name, tensor in weights.items():
        if tensor.dtype != dtypes[name] and not (tensor.is_floating_point() and dtypes[name].is_floating_point):
            raise CheckpointError(
                f"{saved.path}: its weight {name} is {tensor.dtype}, where the network holds {dtypes[name]}: not "
                "weights mixsep wrote. Use a model file that mixsep wrote."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{saved.path}: its weight {name} holds NaN or infinite values (a diverged or damaged model): it "
                "would give garbage. Use the last good checkpoint of its run."
            )
    converted = sorted({str(t.dtype) for t in weights.values() if t.is_floating_point() and t.dtype != torch.float32})
    if converted:
        logging.getLogger("mixsep").warning(
            f"{saved.path.name}: its weights are {', '.join(converted)}; converted to float32 to separate"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}


def check_stored(path: Path, name: Any, tensor: Any) -> None:
    """``tensor`` is dense, in memory, its storage holding all its elements (a stride-0 view passes shape checks)."""
    kind = None
    if not isinstance(tensor, torch.Tensor):
        kind = f"a {type(tensor).__name__}"
    elif tensor.layout is not torch.strided:
        kind = f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    elif tensor.device.type not in ("cpu", "cuda"):
        kind = f"a tensor on the {tensor.device.type} device, without values"
    elif tensor.untyped_storage().nbytes() < tensor.numel() * tensor.element_size():
        kind = f"a view of {tensor.untyped_storage().nbytes():,} bytes posing as {list(tensor.shape)}"
    if kind:
        raise CheckpointError(f"{path}: its weight {str(name)[:80]} is {kind}, not dense weights. {MIXSEP_FILE}")


def check_device(device: str | torch.device) -> None:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is not a device ({str(err)[:120]}): use device='cpu' or 'cuda'") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={str(device)!r}: a model runs on device='cpu' or 'cuda', not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r}, but there is no CUDA GPU on this machine: use device='cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device={str(device)!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s): use 'cuda:0'"
        )


def _largest(value: Any) -> int:
    """The largest integer in a setting (a list's length counts too: one entry per level or block)."""
    if isinstance(value, (list, tuple)):
        return max([len(value), *(_largest(v) for v in value)])
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:160] if text else ''}"


def does_not_fit(path: Path, err: Exception | str) -> CheckpointError:
    why = err if isinstance(err, str) else f"{type(err).__name__}: {' '.join(str(err).split())}"
    return CheckpointError(
        f"{path}: its weights or settings do not fit the networks of this mixsep version ({why[:200]}); it was "
        "written by another version or another program, and nothing was built. Use the mixsep version that wrote "
        "it, or retrain (python -m mixsep.run ...)."
    )


def _checked(path: Path, hparams: dict, precision: Any, sources: Any, module: Any) -> SavedModel:
    try:
        _check_registered(path, hparams.get("net"), module)
        architecture_name, arguments = network_spec(hparams["net"], f"{path}: its network")
        settings = {k: v for k, v in hparams.items() if k != "net"}
        check_plain([settings, precision, sources], f"{path}: its settings")
    except ConfigError as err:
        raise CheckpointError(f"{err}; nothing from the file was run. Use a model that mixsep wrote.") from err
    return SavedModel(
        path=path,
        architecture=architecture_name,
        arguments={k: (None if k in NOT_FROM_FILES else v) for k, v in arguments.items()},
        settings=settings,
        state_dict={},
        precision=str(precision or "32-true"),
        sources=str(sources or DEFAULT_SOURCES),
    )


def _check_registered(path: Path, net: Any, module: Any) -> None:
    """A network of a module not loaded here is named, never imported (importing runs its code)."""
    target = net.get(NAME_KEY, net.get(OLD_NAME_KEY)) if isinstance(net, dict) else None
    if not isinstance(target, str) or not isinstance(module, str) or is_registered(target.rpartition(".")[2]):
        return
    if module.split(".")[0] == "mixsep":  # mixsep's own networks are all known: the name itself is wrong
        return
    if not MODULE_NAME.fullmatch(module[:200]):
        raise CheckpointError(f"{path} records {module[:80]!r} as its network's module: not a Python module name")
    raise CheckpointError(
        f"{path}: its network {target.rpartition('.')[2][:80]} is registered by the Python module {module}, which "
        "is not loaded here; nothing from the file was run. mixsep never imports what a file names: if you trust "
        f"that module's code, install it and name it (MIXSEP_EXTENSIONS={module})."
    )
