"""Bad-input rows: model bundles and checkpoints from elsewhere, crafted from the real shipped model (its bundle,
mixsep/pretrained/best_cpu_range, and its checkpoint), given to separate, evaluate and export. Each is refused in
one line before anything is built or separated. The crafting helpers are shared with
tests/models/test_untrusted_bundles.py, which measures the bombs' time and memory and shows the old way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tests.helpers import PROJECT_ROOT

SHIPPED_BUNDLE = PROJECT_ROOT / "mixsep" / "pretrained" / "best_cpu_range"
SHIPPED_CKPT = PROJECT_ROOT / "results" / "best_cpu_range" / "model.ckpt"
OTHER_WEIGHTS = PROJECT_ROOT / "results" / "best_cpu" / "model.safetensors"  # another model of the same shape
THREE_GB = 3 << 30


def bundle_copy(t: Path, name: str) -> Path:
    folder = Path(t) / name
    if not folder.exists():
        shutil.copytree(SHIPPED_BUNDLE, folder)
    return folder


def edit_config(folder: Path, edit: Callable[[dict], object]) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edited = edit(config)
    path.write_text(edited if isinstance(edited, str) else json.dumps(config if edited is None else edited))
    return folder


def rehash(folder: Path, name: str) -> Path:
    """What an attacker who replaces a file does too: record its SHA-256, so that the content check must catch it."""

    def record(config: dict) -> None:
        config["files"][name]["sha256"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()

    return edit_config(folder, record)


def with_arguments(t: Path, name: str, **arguments) -> Path:
    return edit_config(bundle_copy(t, name), lambda c: c["arguments"].update(arguments))


def with_config(t: Path, name: str, **fields) -> Path:
    return edit_config(bundle_copy(t, name), lambda c: c.update(fields))


def nested_config(t: Path) -> Path:
    """config.json whose arguments are 100,000 lists deep (Python's json gives up with RecursionError)."""
    folder = bundle_copy(t, "nested")
    text = (folder / "config.json").read_text()
    deep = "[" * 100_000 + "]" * 100_000
    return edit_config(folder, lambda c: text.replace('"arguments": {', f'"deep": {deep}, "arguments": {{', 1))


def with_weights(t: Path, name: str, change: Callable[[dict], None]) -> Path:
    """The bundle with its weights changed by ``change`` and the new file's SHA-256 recorded."""
    from safetensors.torch import load_file, save_file

    folder = bundle_copy(t, name)
    weights = load_file(folder / "model.safetensors")
    change(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return rehash(folder, "model.safetensors")


def nan_weight(weights: dict) -> None:
    weights["stem.0.weight"][0, 0, 0, 0] = float("nan")


def integer_weight(weights: dict) -> None:
    weights["stem.0.weight"] = weights["stem.0.weight"].round().to(torch.int32)


def half_weights(weights: dict) -> None:
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            weights[name] = tensor.half()


def declares_3_gb(t: Path) -> Path:
    """model.safetensors whose header declares one 3 GB tensor (a sparse file: it takes no disk)."""
    folder = bundle_copy(t, "declares-3gb")
    path = folder / "model.safetensors"
    header = json.dumps({"stem.0.weight": {"dtype": "F32", "shape": [THREE_GB // 4], "data_offsets": [0, THREE_GB]}})
    header += " " * (-len(header) % 8)
    path.unlink()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
    os.truncate(path, 8 + len(header) + THREE_GB)
    return folder


def long_tensor_bomb(t: Path, name: str, blocks: int, stored: bool) -> Path:
    """A bundle of blocks=``blocks`` whose model.safetensors holds one F32 tensor of ``blocks`` elements, SHA-256
    recorded: ``stored`` with its 4 bytes each (4 MB for a million), or declared over no bytes at all (75 bytes)."""
    folder = with_arguments(t, name, blocks=blocks)
    header = json.dumps({"x": {"dtype": "F32", "shape": [blocks], "data_offsets": [0, 4 * blocks]}})
    header += " " * (-len(header) % 8)
    data = np.zeros(blocks, "<f4").tobytes() if stored else b""
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + data)
    return rehash(folder, "model.safetensors")


def empty_tensor_checkpoint(t: Path, blocks: int) -> Path:
    """A checkpoint of about 2 kB: the shipped network's settings with blocks=``blocks`` and one weight of shape
    [blocks, 0] (no elements)."""
    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    hparams = {**ckpt["hyper_parameters"], "net": {**ckpt["hyper_parameters"]["net"], "blocks": blocks}}
    path = Path(t) / f"empty-{blocks}.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": {"net.x": torch.zeros(blocks, 0)}}, path)
    return path


def weights_replaced(t: Path) -> Path:
    folder = bundle_copy(t, "weights-replaced")
    shutil.copyfile(OTHER_WEIGHTS, folder / "model.safetensors")
    return folder


def network_of_a_module_not_here(t: Path) -> Path:
    return with_config(t, "module-missing", architecture="ShipNet", network_module="their_lab.nets")


def checkpoint_with(t: Path, name: str, training: bool = False, nan: bool = False, **arguments) -> Path:
    """The shipped checkpoint with other network arguments or a NaN weight; ``training``: as a whole training
    checkpoint (what run's ckpt_path= resumes)."""
    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    net = {**ckpt["hyper_parameters"]["net"], **arguments}
    ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], "net": net}
    if nan:
        ckpt["state_dict"]["net.stem.0.weight"][0, 0, 0, 0] = float("inf")
    if training:
        ckpt.update(optimizer_states=[], loops={}, epoch=0, global_step=0)
    path = Path(t) / f"{name}.ckpt"
    torch.save(ckpt, path)
    return path


def nested_checkpoint(t: Path) -> Path:
    """The shipped checkpoint with a setting 5,000 lists deep."""
    import sys

    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    ckpt["hyper_parameters"] = {**ckpt["hyper_parameters"], "notes": deep}
    path = Path(t) / "nested.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # pickling it takes one frame per level
    try:
        torch.save(ckpt, path)
    finally:
        sys.setrecursionlimit(limit)
    return path


def shared_lists(levels: int) -> list:
    """One list holding itself four times over ``levels`` times: pickle writes each list once (a few bytes a
    level), a walk that follows every reference meets 4**levels of them."""
    value: list = [0]
    for _ in range(levels):
        value = [value, value, value, value]
    return value


def settings_bomb(t: Path, levels: int) -> Path:
    """A checkpoint of about 2 kB: the shipped network's settings, no weights, and a setting of shared lists."""
    net = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)["hyper_parameters"]["net"]
    path = Path(t) / f"shared-lists-{levels}.ckpt"
    torch.save({"hyper_parameters": {"net": net, "notes": shared_lists(levels)}, "state_dict": {}}, path)
    return path


def stride_bomb(t: Path) -> Path:
    """A checkpoint of about 30 kB for a U-Net of width 512 (3 GB of weights): each weight is one zero viewed as
    the weight's whole shape (stride 0), so every shape check passes and building the network takes gigabytes."""
    from mixsep.models.registry import architecture

    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    net = {**ckpt["hyper_parameters"]["net"], "width": 512}
    arguments = {k: v for k, v in net.items() if k != "_target_"}
    with torch.device("meta"):
        layout = {k: (v.shape, v.dtype) for k, v in architecture("UNetSeparator")(**arguments).state_dict().items()}
    state = {f"net.{k}": torch.zeros((), dtype=dtype).expand(shape) for k, (shape, dtype) in layout.items()}
    path = Path(t) / "stride-bomb.ckpt"
    torch.save({"hyper_parameters": {**ckpt["hyper_parameters"], "net": net}, "state_dict": state}, path)
    return path


def checkpoint_with_weight(t: Path, kind: str) -> Path:
    """The shipped checkpoint with its first weight ``sparse`` (PyTorch's sparse COO layout) or on the ``meta``
    device (a shape without values)."""
    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    weight = ckpt["state_dict"]["net.stem.0.weight"]
    replaced = weight.to_sparse() if kind == "sparse" else torch.empty_like(weight, device="meta")
    ckpt["state_dict"] = {**ckpt["state_dict"], "net.stem.0.weight": replaced}
    path = Path(t) / f"{kind}-weight.ckpt"
    torch.save(ckpt, path)
    return path


def weights_a_fifo(t: Path) -> Path:
    """A bundle whose model.safetensors is a named pipe (a tar archive can carry one): opening it would block."""
    folder = bundle_copy(t, "fifo")
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")
    return folder


def checkpoint_with_a_number_key(t: Path) -> Path:
    """The shipped checkpoint with a weight named by a number, not a string."""
    ckpt = torch.load(SHIPPED_CKPT, map_location="cpu", weights_only=True)
    ckpt["state_dict"][7] = torch.zeros(1)
    path = Path(t) / "number-key.ckpt"
    torch.save(ckpt, path)
    return path


def scores_bomb(t: Path) -> Path:
    """A run folder holding the shipped checkpoint, its metrics.json, and a scores.npz of about 20 kB that
    holds a million zeros per key (8 MB each once loaded; zip compresses zeros a thousandfold)."""
    run = Path(t) / "scored"
    run.mkdir(exist_ok=True)
    shutil.copyfile(SHIPPED_CKPT, run / "model.ckpt")
    (run / "metrics.json").write_text(json.dumps({"checkpoint": str(run / "model.ckpt")}))
    keys = ("pair", "mnist_psnr", "cifar_psnr", "mnist_ssim", "cifar_ssim")
    np.savez_compressed(run / "scores.npz", **{k: np.zeros(1_000_000) for k in keys})
    return run


def run_naming_elsewhere(t: Path, link: bool = False) -> Path:
    """A run folder whose metrics.json names a checkpoint outside it (``link``: a link inside it that leads out)."""
    private = Path(t) / "private" / "theirs.ckpt"
    private.parent.mkdir(exist_ok=True)
    shutil.copyfile(SHIPPED_CKPT, private)
    run = Path(t) / ("linked-run" if link else "run-elsewhere")
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    tested = private
    if link:
        tested = run / "checkpoints" / "best.ckpt"
        if not tested.is_symlink():
            tested.symlink_to(private)
    (run / "metrics.json").write_text(json.dumps({"checkpoint": str(tested)}))
    return run


def onnx_graph(t: Path, name: str, kind: str, record: bool = True) -> Path:
    """The bundle with another model.onnx: ``zeros`` (gives black images), ``small`` (16x16 images),
    ``input-name`` (takes ``x``), ``protobuf`` (not a graph), ``external`` (weights in ../secret.bin), ``mix``
    (gives the mix back as both sources), ``loop`` (a Loop of 10**15 steps that does nothing)."""
    from onnx import TensorProto, helper, numpy_helper

    folder = bundle_copy(t, name)
    mix = helper.make_tensor_value_info("x" if kind == "input-name" else "mix", TensorProto.FLOAT, ["b", 3, 32, 32])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("gray", "colour")]
    source = "x" if kind == "input-name" else "mix"
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    if kind == "small":
        pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
        nodes = [helper.make_node("MaxPool", [source], [n], **pool) for n in ("gray", "colour")]
    elif kind == "mix":
        nodes = [helper.make_node("Identity", [source], [n]) for n in ("gray", "colour")]
    elif kind == "loop":
        nodes = _endless_loop(helper, TensorProto, source)
    else:
        nodes = [helper.make_node("Mul", [source, "zero"], [n]) for n in ("gray", "colour")]
    graph = helper.make_graph(nodes, "crafted", [mix], outputs, initializer=[zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if kind == "external":
        secret = Path(t) / "secret.bin"
        secret.write_bytes(np.zeros(1, np.float32).tobytes())
        zero = model.graph.initializer[0]
        zero.ClearField("raw_data")
        zero.data_location = TensorProto.EXTERNAL
        zero.external_data.add(key="location", value="../secret.bin")
    data = b"\x08\x07garbage, not a protobuf" * 10 if kind == "protobuf" else model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    return rehash(folder, "model.onnx") if record else folder


def _endless_loop(helper, TensorProto, source: str) -> list:
    steps = helper.make_tensor("steps", TensorProto.INT64, [], [10**15])
    true = helper.make_tensor("true", TensorProto.BOOL, [], [True])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.BOOL if n == "cond_out" else TensorProto.FLOAT, None)
            for n in ("cond_out", "x_out")
        ],
    )
    return [
        helper.make_node("Constant", [], ["M"], value=steps),
        helper.make_node("Constant", [], ["c"], value=true),
        helper.make_node("Loop", ["M", "c", source], ["looped"], body=body),
        helper.make_node("Identity", ["looped"], ["gray"]),
        helper.make_node("Identity", [source], ["colour"]),
    ]


def unrecorded_onnx(t: Path) -> Path:
    """A bundle as mixsep 0.1 wrote it (format 1: no SHA-256 recorded) with a graph that gives black images."""
    folder = onnx_graph(t, "unrecorded", "zeros", record=False)

    def as_format_1(config: dict) -> None:
        config["format_version"] = 1
        del config["files"]

    return edit_config(folder, as_format_1)


def nested_metrics(t: Path) -> Path:
    path = Path(t) / "metrics.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def image(t: Path) -> str:
    from PIL import Image

    path = Path(t) / "mix.png"
    if not path.exists():
        Image.new("RGB", (32, 32), (90, 120, 60)).save(path)
    return str(path)


FITS = "larger than anything its weights hold"
# (case, how to craft it, the words of its one line)
BUNDLES = [
    ("depth-bomb", lambda t: with_arguments(t, "depth", depth=1_000_000), FITS),
    ("blocks-bomb", lambda t: with_arguments(t, "blocks", blocks=100_000), FITS),
    ("width-2048", lambda t: with_arguments(t, "width", width=2048), FITS),
    ("declares-3gb", declares_3_gb, "do not fit"),
    ("blocks-over-no-bytes", lambda t: long_tensor_bomb(t, "no-bytes", 20_000, False), "more than 66 modules"),
    ("ckpt-blocks-over-empty", lambda t: empty_tensor_checkpoint(t, 20_000), "holds no elements"),
    ("arguments-a-list", lambda t: with_config(t, "list", arguments=[32, 3]), "arguments must be a mapping"),
    ("width-a-float", lambda t: with_arguments(t, "float", width=32.5), "do not fit"),
    ("config-nested", nested_config, "nested too deeply"),
    ("weights-replaced", weights_replaced, "is not the file exported with this bundle"),
    ("weights-nan", lambda t: with_weights(t, "nan", nan_weight), "NaN or infinite"),
    ("weights-integer", lambda t: with_weights(t, "int", integer_weight), "is torch.int32"),
    ("network-module-missing", network_of_a_module_not_here, "registered by the Python module their_lab.nets"),
    ("ckpt-nested", nested_checkpoint, "nested too deeply"),
    ("ckpt-depth-bomb", lambda t: checkpoint_with(t, "depth", depth=1_000_000), FITS),
    ("ckpt-infinite-weight", lambda t: checkpoint_with(t, "inf", nan=True), "NaN or infinite"),
    ("ckpt-shared-lists", lambda t: settings_bomb(t, 20), "too large (over 100,000 values)"),
    ("ckpt-shared-lists-deep", lambda t: settings_bomb(t, 40), "nested too deeply"),
    ("ckpt-stride-0-views", stride_bomb, "is a view of 4 bytes posing as [512, 6, 3, 3]"),
    ("ckpt-sparse-weight", lambda t: checkpoint_with_weight(t, "sparse"), "is a sparse_coo tensor"),
    ("ckpt-meta-weight", lambda t: checkpoint_with_weight(t, "meta"), "on the meta device"),
    ("weights-a-fifo", weights_a_fifo, "needs model.safetensors as a file"),
    ("ckpt-number-key", checkpoint_with_a_number_key, "its weights are not a mapping of names to tensors"),
]
ONNX_BUNDLES = [
    ("onnx-replaced", lambda t: onnx_graph(t, "onnx-zeros", "zeros", record=False), "not the file exported"),
    ("onnx-unrecorded", unrecorded_onnx, "is not recorded in config.json"),
    ("onnx-bad-protobuf", lambda t: onnx_graph(t, "onnx-protobuf", "protobuf"), "ONNX Runtime cannot open it"),
    ("onnx-external-data", lambda t: onnx_graph(t, "onnx-external", "external"), "ONNX Runtime cannot open it"),
    ("onnx-input-name", lambda t: onnx_graph(t, "onnx-x", "input-name"), "Required inputs (['x']) are missing"),
    ("onnx-16x16", lambda t: onnx_graph(t, "onnx-small", "small"), "gives gray as float32 (2, 3, 16, 16)"),
    ("onnx-gives-the-mix", lambda t: onnx_graph(t, "onnx-mix", "mix"), "does not give the weights' outputs"),
    ("onnx-endless-loop", lambda t: onnx_graph(t, "onnx-loop", "loop"), "runs longer than 5 s on 2 images"),
]
SEPARATE, EVALUATE, EXPORT, RUN = (["python", "-m", f"mixsep.{n}"] for n in ("separate", "evaluate", "export", "run"))


def _rows() -> list:
    rows = []
    for case, craft, words in BUNDLES:
        rows += [
            (
                f"separate-{case}",
                lambda t, r, c=craft: [*SEPARATE, image(t), "--model", str(c(t)), "--out", f"{t}/s"],
                words,
            ),
            (f"evaluate-{case}", lambda t, r, c=craft: [*EVALUATE, f"ckpt_path={c(t)}", f"hydra.run.dir={t}/e"], words),
            (f"export-{case}", lambda t, r, c=craft: [*EXPORT, str(c(t)), f"{t}/b"], words),
        ]
    for case, craft, words in ONNX_BUNDLES:
        onnx = lambda t, r, c=craft: [*SEPARATE, image(t), "--model", str(c(t)), "--onnx", "--out", f"{t}/s"]
        rows.append((f"separate-{case}", onnx, words))
    for case, arguments in (("depth-bomb", {"depth": 1_000_000}), ("width-2048", {"width": 2048})):
        resume = lambda t, r, a=arguments: [*RUN, f"ckpt_path={checkpoint_with(t, 'resumed', True, **a)}"]
        rows.append((f"run-ckpt-{case}", resume, FITS))
    nested = lambda t, r: [*EXPORT, str(SHIPPED_CKPT), f"{t}/b", "--metrics", str(nested_metrics(t))]
    rows.append(("export-metrics-nested", nested, "nested too deeply"))
    rows.append(("export-scores-bomb", lambda t, r: [*EXPORT, str(scores_bomb(t)), f"{t}/b"], "more than 100,000"))
    outside = "is not inside the run folder"
    rows.append(
        (
            "export-run-names-a-checkpoint-elsewhere",
            lambda t, r: [*EXPORT, str(run_naming_elsewhere(t)), f"{t}/b"],
            outside,
        )
    )
    linked = lambda t, r: [*EXPORT, str(run_naming_elsewhere(t, link=True)), f"{t}/b"]
    rows.append(("export-run-links-a-checkpoint-elsewhere", linked, outside))
    return rows


ROWS = _rows()
