"""Reading a trained model from a file someone may have sent: a Lightning checkpoint (``.ckpt``) or a model
bundle (a folder: ``model.safetensors``, ``config.json``, ``README.md``; ``python -m mixsep.export`` writes one).

Nothing read runs code: checkpoints go through PyTorch's weights-only unpickler (plain containers, numbers,
strings and tensors; no other object is rebuilt), bundles hold tensors (safetensors) and JSON, and the network
either names is looked up among mixsep's own (``registry.py``) with plain arguments.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import register_module_module_registration_hook

from mixsep.data.sources import DEFAULT_SOURCES
from mixsep.errors import CheckpointError, ConfigError
from mixsep.models.bundle_files import (  # noqa: F401  (the bundle's file names, imported from here by earlier code)
    BUNDLE_FORMAT,
    CARD_FILE,
    CONFIG_FILE,
    MODULE_NAME,
    ONNX_FILE,
    WEIGHTS_FILE,
    read_bundle_config,
    verify_file,
)
from mixsep.models.registry import NAME_KEY, OLD_NAME_KEY, architecture, check_plain, is_registered, network_spec

# settings a file may not set when it is loaded: they name or read other files on the receiver's machine
NOT_FROM_FILES = ("pretrained_weights",)


@dataclass
class SavedModel:
    """What a model file holds, checked: its network (a registered name and plain arguments), the
    LightningModule's other settings, the weights (the module's keys: ``net.*``), and what it was trained on."""

    path: Path
    architecture: str
    arguments: dict
    settings: dict  # the module's hyper-parameters besides the network (name, lr, loss, tta, ...)
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    precision: str = "32-true"
    sources: str = DEFAULT_SOURCES
    extra: dict = field(default_factory=dict)  # a bundle's config.json as written; {} for a checkpoint
    network_module: str | None = None  # the Python module that registered the network, as the file records it

    @property
    def net_config(self) -> dict:
        """The network as a config node (its registered name under ``name``, as checkpoints write it)."""
        return {NAME_KEY: self.architecture, **self.arguments}

    @property
    def hyper_parameters(self) -> dict:
        return {**self.settings, "net": self.net_config}

    def net_state_dict(self) -> dict[str, torch.Tensor]:
        return {k.removeprefix("net."): v for k, v in self.state_dict.items() if k.startswith("net.")}


def read_model(path: str | Path, map_location: str | torch.device = "cpu") -> SavedModel:
    """The model in ``path``: a checkpoint file or a bundle folder (one-line CheckpointErrors otherwise). Its
    network's arguments are held against the tensors the file holds (the network built on the meta device, which
    allocates nothing) before any weight is read into memory."""
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
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(state, dict) or "net" not in hparams:
        raise CheckpointError(
            f"{path} is a checkpoint without a mixsep network's settings and weights: it comes from another "
            "program. Use a .ckpt that mixsep.run wrote, or a bundle from python -m mixsep.export."
        )
    module = ckpt.get("mixsep_network_module")
    saved = _checked(path, hparams, state, ckpt.get("mixsep_precision"), ckpt.get("mixsep_sources"), module=module)
    for name, tensor in state.items():
        check_stored(path, name, tensor)
    layout = {name: (tuple(t.shape), t.dtype) for name, t in state.items() if name.startswith("net.")}
    check_fits(saved, layout)
    saved.state_dict = {**state, **checked_values(saved, {k: state[k] for k in layout})}
    return saved


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint through PyTorch's weights-only unpickler: a file whose pickle would rebuild anything but
    plain data and tensors is refused, and nothing in it runs."""
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
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {first[:160]}); it may be truncated or "
            "come from another program. Use a .ckpt that mixsep.run wrote."
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a mixsep checkpoint.")
    return ckpt


def read_bundle(folder: Path, map_location: str | torch.device = "cpu") -> SavedModel:
    from safetensors.torch import load_file

    config = read_bundle_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(
            f"{folder} is not a mixsep model bundle: it needs {WEIGHTS_FILE} (python -m mixsep.export CKPT DIR "
            "writes it)"
        )
    net = {NAME_KEY: config["architecture"], **config["arguments"]}
    hparams = {**(config.get("settings") or {}), "net": net}
    precision, sources, module = config.get("precision"), config.get("sources"), config.get("network_module")
    saved = _checked(folder, hparams, {}, precision, sources, config, module)
    check_fits(saved, {f"net.{k}": v for k, v in safetensors_layout(weights_path).items()})
    verify_file(folder, config, WEIGHTS_FILE)
    if not config.get("files"):
        logging.getLogger("mixsep").warning(
            f"{folder} was exported before bundles recorded their files' SHA-256 (format {config['format_version']}):"
            " its weights are read unverified; export it again (python -m mixsep.export) to record them"
        )
    try:
        weights = load_file(weights_path, device=str(map_location))
    except Exception as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({err}); export it again") from err
    saved.state_dict = checked_values(saved, {f"net.{k}": v for k, v in weights.items()})
    return saved


MAX_HEADER_BYTES = 1 << 20  # a mixsep network's header is about 10 kB (safetensors itself allows 100 MB)
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def safetensors_layout(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype | str]]:
    """Each tensor's shape and dtype as the file's header declares them. Only the header is read (its documented
    layout: an 8-byte little-endian length, then that much JSON); safetensors' own reader maps the whole file,
    which for a file declaring gigabytes is itself the harm."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise ValueError(f"a header of {length:,} bytes")
            header = json.loads(f.read(length))
        stored_bytes = path.stat().st_size - 8 - length
        layout = {name: _declared(entry, stored_bytes) for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, AttributeError, RecursionError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({type(err).__name__}: {str(err)[:160]}); export it again"
        ) from err
    return layout


def _declared(entry: Any, stored_bytes: int) -> tuple[tuple[int, ...], torch.dtype | str]:
    """A tensor's shape and dtype, once its bytes are seen to lie in the file: a header may declare any shape,
    and only the bytes behind it say how large the network it describes can be."""
    shape, dtype = entry.get("shape"), SAFETENSORS_DTYPES.get(entry.get("dtype"), str(entry.get("dtype")))
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"a tensor of shape {str(shape)[:40]}")
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)):
        raise ValueError(f"a tensor at {str(offsets)[:40]}")
    begin, end = offsets
    needed = math.prod(shape) * (dtype.itemsize if isinstance(dtype, torch.dtype) else 1)
    if not 0 <= begin <= end <= stored_bytes or end - begin != needed:
        raise ValueError(f"a tensor of shape {shape} at bytes {begin}..{end} of the {stored_bytes:,} stored")
    return tuple(shape), dtype


def check_fits(saved: SavedModel, layout: dict[str, tuple[tuple[int, ...], torch.dtype | str]]) -> None:
    """The network the file's settings describe holds exactly the tensors the file holds: its sizes are first
    bounded by what the file stores (no setting larger than its tensor count or the largest dimension of a tensor
    holding values; a declared dimension of a tensor with no elements costs nothing and bounds nothing), then the
    network is built on the meta device (no memory, and no more modules than the file has tensors) and its
    tensors' names and shapes compared with ``layout``."""
    empty = next((name for name, (shape, _) in layout.items() if math.prod(shape) == 0), None)
    if empty is not None:
        raise CheckpointError(
            f"{saved.path}: its weight {empty[:80]} holds no elements (shape {list(layout[empty][0])[:8]}): a mixsep "
            "network has no empty tensors, so these are not weights mixsep wrote, and nothing was built. Use a model "
            "file that mixsep wrote."
        )
    bound = max([len(layout), *(max(shape, default=1) for shape, _ in layout.values())])
    for key, value in saved.arguments.items():
        too_large = _largest(value) > bound
        if too_large:
            raise CheckpointError(
                f"{saved.path}: its network's {key}={_short(value)} is larger than anything its weights hold "
                f"({len(layout)} tensors, none with a dimension above {bound}): its settings do not describe its "
                "weights, and nothing was built. Use a model file that mixsep wrote."
            )
    try:
        with torch.device("meta"), _at_most_modules(2 * len(layout) + 64):
            net = architecture(saved.architecture)(**saved.arguments)
        expected = {f"net.{k}": (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    except Exception as err:
        raise does_not_fit(saved.path, err) from err
    missing, extra = sorted(expected.keys() - layout.keys()), sorted(layout.keys() - expected.keys())
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"holds {extra[0]}, which the network has not"
        raise does_not_fit(saved.path, f"{len(missing)} tensors missing, {len(extra)} unexpected: the file {what}")
    for name, (shape, dtype) in layout.items():
        want_shape, want_dtype = expected[name]
        if shape != want_shape:
            raise does_not_fit(saved.path, f"{name} is {list(shape)} in the file, {list(want_shape)} in the network")
        convertible = isinstance(dtype, torch.dtype) and dtype.is_floating_point and want_dtype.is_floating_point
        if dtype != want_dtype and not convertible:
            raise CheckpointError(
                f"{saved.path}: its weight {name} is {dtype}, where the network holds {want_dtype}: not weights "
                "mixsep wrote. Use a model file that mixsep wrote."
            )


@contextmanager
def _at_most_modules(limit: int) -> Iterator[None]:
    """Building a network with more than ``limit`` submodules stops (ValueError) at the one over: a setting
    that counts blocks or levels can stay within a file's largest dimension yet ask for millions of modules,
    each a Python object even on the meta device (mixsep's networks have fewer modules than tensors)."""
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


def checked_values(saved: SavedModel, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights, all finite (NaN or infinite ones are refused), floating ones in float32 (converted with a
    note: a half-precision file loses nothing, a float64 one its last digits)."""
    for name, tensor in weights.items():
        check_stored(saved.path, name, tensor)
    converted = sorted({str(t.dtype) for t in weights.values() if t.is_floating_point() and t.dtype != torch.float32})
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{saved.path}: its weight {name} holds NaN or infinite values (a diverged or damaged model): it "
                "would give garbage. Use the last good checkpoint of its run."
            )
    if converted:
        logging.getLogger("mixsep").warning(
            f"{saved.path.name}: its weights are {', '.join(converted)}; converted to float32 to separate"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}


def check_stored(path: Path, name: str, tensor: torch.Tensor) -> None:
    """``tensor`` is what mixsep writes: dense, strided, in memory, its storage holding all of its elements. A
    view of one number expanded to a large shape (stride 0) would pass the shape checks with a file of kilobytes
    and then take gigabytes once the network it describes is built; a sparse or meta tensor is not weights."""
    kind = None
    if tensor.layout is not torch.strided:
        kind = f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    elif tensor.device.type != "cpu" and tensor.device.type != "cuda":
        kind = f"a tensor on the {tensor.device.type} device, without values"
    elif not tensor.is_contiguous() and tensor.untyped_storage().nbytes() < tensor.numel() * tensor.element_size():
        stored = tensor.untyped_storage().nbytes()
        kind = f"a view of {stored:,} bytes posing as {list(tensor.shape)}"
    if kind:
        raise CheckpointError(
            f"{path}: its weight {name[:80]} is {kind}, not dense weights: not a model mixsep wrote. Use a .ckpt "
            "that mixsep.run wrote, or a bundle from python -m mixsep.export."
        )


def check_device(device: str | torch.device) -> None:
    """A device a model can be read onto here: the CPU, or a CUDA GPU that this machine has."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is not a device ({str(err)[:120]}): use device='cpu' or 'cuda'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(device)!r}, but there is no CUDA GPU on this machine: use device='cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device={str(device)!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s): use 'cuda:0'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={str(device)!r}: a model runs on device='cpu' or 'cuda', not {device.type}")


def _largest(value: Any) -> int:
    """The largest integer in a setting (a list's length counts too: one entry per level or block)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return max([len(value), *(_largest(v) for v in value)])
    return 0


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def does_not_fit(path: Path, err: Exception | str) -> CheckpointError:
    why = err if isinstance(err, str) else f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    return CheckpointError(
        f"{path}: its weights or settings do not fit the networks of this mixsep version ({why[:200]}); it was "
        "written by another version or another program, and nothing was built. Use the mixsep version that wrote "
        "it, or retrain (python -m mixsep.run ...)."
    )


def _checked(
    path: Path,
    hparams: dict,
    state: dict,
    precision: Any,
    sources: Any,
    extra: dict | None = None,
    module: Any = None,
) -> SavedModel:
    try:
        _check_registered(path, hparams.get("net"), module)
        architecture_name, arguments = network_spec(hparams["net"], f"{path}: its network")
        settings = {k: v for k, v in hparams.items() if k != "net"}
        check_plain(settings, f"{path}: its settings")
        check_plain([precision, sources], f"{path}: its precision and sources")
    except ConfigError as err:
        raise CheckpointError(f"{err}; nothing from the file was run. Use a model that mixsep wrote.") from err
    except RecursionError as err:
        raise CheckpointError(f"{path}: its settings are nested too deeply: it is not a file mixsep wrote") from err
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: its weights are not a mapping of names to tensors")
    arguments = {k: (None if k in NOT_FROM_FILES else v) for k, v in arguments.items()}
    return SavedModel(
        path=path,
        architecture=architecture_name,
        arguments=arguments,
        settings=settings,
        state_dict=state,
        precision=str(precision or "32-true"),
        sources=str(sources or DEFAULT_SOURCES),
        extra=extra or {},
        network_module=module if isinstance(module, str) else None,
    )


def _check_registered(path: Path, net: Any, module: Any) -> None:
    """A network that a module of one's own registered, and that module not loaded here: the line names it (it is
    never imported because a file names it: importing runs its code)."""
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
