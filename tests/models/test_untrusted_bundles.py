"""A model bundle or checkpoint from elsewhere is one verified thing: sizes are held against the tensors the file
holds before anything is built (a bomb is one line within seconds and little memory), config.json's SHA-256 ties
model.safetensors and model.onnx to it, ONNX Runtime opens only checked bytes and is tried on a probe batch,
weights must be finite, and the network's module is named, never imported. Each crafted file comes from the real
shipped model (tests/user_paths/bad_rows_bundles.py crafts them; the bad-input table gives each to separate,
evaluate and export) and is first shown to do its harm the old way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mixsep import load_separator
from mixsep.errors import CheckpointError, MixsepError
from tests.helpers import PROJECT_ROOT, run_in_this_process
from tests.user_paths.bad_rows_bundles import (
    BUNDLES,
    SHIPPED_BUNDLE,
    SHIPPED_CKPT,
    bundle_copy,
    checkpoint_with_weight,
    declares_3_gb,
    edit_config,
    empty_tensor_checkpoint,
    half_weights,
    image,
    long_tensor_bomb,
    nan_weight,
    onnx_graph,
    run_naming_elsewhere,
    scores_bomb,
    settings_bomb,
    stride_bomb,
    with_weights,
)

GIB = 1 << 30
MIX = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def limited(code: str, address_space: int, timeout: float) -> tuple[int | None, str]:
    """``code`` in a fresh Python under an address-space limit: (exit status, or None when it ran past
    ``timeout`` seconds; its output)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            preexec_fn=limit,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=PROJECT_ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return done.returncode, done.stdout + done.stderr


BOMBS = {case: (craft, words) for case, craft, words in BUNDLES if case in ("depth-bomb", "blocks-bomb", "width-2048")}
BOMBS["declares-3gb"] = (declares_3_gb, "do not fit")
# a size bounded only by a dimension the file declares: over no bytes, over no elements, or over 4 MB it stores
MILLION = 1_000_000
BOMBS["blocks-over-no-bytes"] = (lambda t: long_tensor_bomb(t, "no-bytes", MILLION, False), "more than 66 modules")
BOMBS["ckpt-blocks-over-empty"] = (lambda t: empty_tensor_checkpoint(t, MILLION), "holds no elements")
BOMBS["blocks-over-4-mb"] = (lambda t: long_tensor_bomb(t, "4-mb", MILLION, True), "more than 66 modules")


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_a_size_bomb_is_one_line_within_seconds_and_under_1_gb(case, tmp_path):
    craft, words = BOMBS[case]
    bundle = craft(tmp_path)
    status, out = limited(
        f"""
        import resource, time
        from mixsep import load_separator
        from mixsep.errors import CheckpointError
        import mixsep.models.separator, safetensors.torch  # what any load imports, before the file is read
        print("base kB:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        start = time.perf_counter()
        try:
            load_separator({str(bundle)!r})
        except CheckpointError as err:
            print("refused:", err)
        print("seconds:", time.perf_counter() - start)
        print("peak kB:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """,
        4 * GIB,
        timeout=120,
    )
    assert status == 0, out[-2000:]
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert words in values["refused"] and "\n" not in values["refused"]
    assert float(values["seconds"]) < 3
    # what reading the file adds to the process (PyTorch's own import alone is 0.6 to 1 GB, by build and machine)
    assert int(values["peak kB"]) - int(values["base kB"]) < GIB // 1024


@pytest.mark.parametrize("case", ["width-2048", "depth-bomb", "declares-3gb", "blocks-over-4-mb"])
def test_the_size_bombs_exhaust_the_old_readers(case, tmp_path):
    """The old way (the network built from config.json's arguments; the weights read as the file declares them)
    does not come back with an answer within seconds under the same machine's 4 GB: a MemoryError, a crash or a
    hang."""
    bundle = BOMBS[case][0](tmp_path)
    if case == "declares-3gb":
        code = f"from safetensors.numpy import load_file; load_file({str(bundle / 'model.safetensors')!r})"
    else:
        arguments = json.loads((bundle / "config.json").read_text())["arguments"]
        code = f"from mixsep.models.unet import UNetSeparator; UNetSeparator(**{arguments!r}); print('built')"
    status, out = limited(code, 4 * GIB, timeout=20)
    assert status != 0, out[-2000:]  # None: still going after 20 s


@pytest.mark.parametrize("case, craft, words", BUNDLES, ids=[row[0] for row in BUNDLES])
def test_load_separator_refuses_each_crafted_file_with_one_checkpoint_error(case, craft, words, tmp_path):
    from mixsep.models.separator import load_module

    path = craft(tmp_path)
    for load in (load_separator, load_module):
        with pytest.raises(CheckpointError) as refused:
            load(path)
        assert words in str(refused.value) and "\n" not in str(refused.value)


def test_nan_weights_give_garbage_the_old_way_and_are_refused(tmp_path):
    from safetensors.torch import load_file

    from mixsep.models.unet import UNetSeparator

    bundle = with_weights(tmp_path, "nan", nan_weight)
    arguments = json.loads((bundle / "config.json").read_text())["arguments"]
    old = UNetSeparator(**arguments).eval()
    old.load_state_dict(load_file(bundle / "model.safetensors"))
    with torch.no_grad():
        assert torch.isnan(old(MIX)[0]).any()  # the old reader's separator: NaN pictures
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_separator(bundle)


def test_half_precision_weights_are_converted_with_a_note(tmp_path, caplog):
    bundle = with_weights(tmp_path, "half", half_weights)
    separator = load_separator(bundle)
    assert "converted to float32" in caplog.text and "torch.float16" in caplog.text
    expected = load_separator(SHIPPED_BUNDLE)(MIX)
    assert all((a - b).abs().max() < 0.05 for a, b in zip(separator(MIX), expected))


def test_a_replaced_graph_is_used_the_old_way_and_refused_by_every_reader(tmp_path, capfd):
    """A model.onnx that gives black images: ONNX Runtime runs it; separate --onnx and export refuse it."""
    import onnxruntime

    bundle = onnx_graph(tmp_path, "zeros", "zeros", record=False)
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert not session.run(None, {"mix": MIX.numpy()})[0].any()  # the old separate --onnx: black pictures
    out = tmp_path / "separated"
    argv = ["python", "-m", "mixsep.separate", image(tmp_path), "--model", str(bundle), "--onnx", "--out", str(out)]
    assert run_in_this_process(argv) == 1
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("mixsep:")] == [
        f"mixsep: {bundle / 'model.onnx'} is not the file exported with this bundle (its SHA-256 differs from the "
        "one in config.json): it was replaced or damaged; export it again (python -m mixsep.export CKPT DIR [--onnx])"
    ]
    assert not out.exists()


def test_graph_weights_in_another_file_are_never_read(tmp_path, monkeypatch):
    """A graph whose initializer lies in an external file: ONNX Runtime opened from the path reads it (7 times the
    mix comes back); opened as mixsep opens it (the checked bytes), it can read no file at all, even one in the
    folder the command runs in."""
    import onnx
    import onnxruntime

    bundle = onnx_graph(tmp_path, "external", "external")
    model = onnx.load(bundle / "model.onnx", load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "secret.bin"
    (bundle / "model.onnx").write_bytes(model.SerializeToString())
    for folder in (bundle, tmp_path):
        (folder / "secret.bin").write_bytes(np.full(1, 7, np.float32).tobytes())
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, {"mix": MIX.numpy()})[0], 7 * MIX.numpy())  # the file was read
    edit_config(bundle, lambda c: c["files"]["model.onnx"].update(sha256=_sha256(bundle / "model.onnx")))
    monkeypatch.chdir(tmp_path)
    from mixsep.models.onnx_graph import open_onnx

    with pytest.raises(CheckpointError, match="ONNX Runtime cannot open it") as refused:
        open_onnx(bundle)
    assert "\n" not in str(refused.value)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_bundles_are_verified_and_an_old_format_bundle_still_loads(tmp_path):
    for folder in (SHIPPED_BUNDLE, PROJECT_ROOT / "results" / "best_cpu"):
        files = json.loads((folder / "config.json").read_text())["files"]
        assert all(_sha256(folder / name) == record["sha256"] for name, record in files.items())
    from mixsep.models.onnx_graph import open_onnx

    gray, _ = open_onnx(SHIPPED_BUNDLE)(MIX.numpy())
    assert np.abs(gray - load_separator(SHIPPED_BUNDLE)(MIX)[0].numpy()).max() < 1e-4
    old = bundle_copy(tmp_path, "format-1")  # as mixsep 0.1 wrote it: no hashes; the weights load unverified
    edit_config(old, lambda c: c.update(format_version=1, files=None))
    assert torch.equal(load_separator(old)(MIX)[0], load_separator(SHIPPED_BUNDLE)(MIX)[0])


def test_every_file_of_an_exported_bundle_is_readable_as_open_would_create_it(tmp_path):
    from mixsep.export import export_bundle

    umask = os.umask(0o022)
    try:
        export_bundle(SHIPPED_CKPT, tmp_path / "b")
        (tmp_path / "probe").write_text("")  # what open() creates under this umask
    finally:
        os.umask(umask)
    expected = (tmp_path / "probe").stat().st_mode & 0o777
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "b").iterdir()} == dict.fromkeys(
        ["model.safetensors", "config.json", "README.md"], expected
    )


def test_a_network_from_a_module_not_loaded_is_named_never_imported_and_loads_once_named(tmp_path, monkeypatch):
    from mixsep.models.registry import NETWORKS

    marker = tmp_path / "imported.marker"
    (tmp_path / "their_lab_nets.py").write_text(
        "from pathlib import Path\n"
        "from mixsep.models.registry import register_network\n"
        "from mixsep.models.unet import UNetSeparator\n"
        f"Path({str(marker)!r}).touch()\n"
        "@register_network\n"
        "class ShipNet(UNetSeparator):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bundle = edit_config(bundle_copy(tmp_path, "ship"), lambda c: c.update(architecture="ShipNet"))
    edit_config(bundle, lambda c: c.update(network_module="their_lab_nets"))
    monkeypatch.delenv("MIXSEP_EXTENSIONS", raising=False)
    with pytest.raises(CheckpointError, match=r"registered by the Python module their_lab_nets, .*MIXSEP_EXTENSIONS"):
        load_separator(bundle)
    assert not marker.exists()  # named, never imported
    monkeypatch.setenv("MIXSEP_EXTENSIONS", "their_lab_nets")
    try:
        assert torch.equal(load_separator(bundle)(MIX)[0], load_separator(SHIPPED_BUNDLE)(MIX)[0])
    finally:
        NETWORKS.pop("ShipNet", None)
        sys.modules.pop("their_lab_nets", None)


def test_checkpoints_and_bundles_record_the_module_of_their_network():
    from mixsep.models.separator import load_module

    checkpoint: dict = {}
    load_module(SHIPPED_CKPT).on_save_checkpoint(checkpoint)
    assert checkpoint["mixsep_network_module"] == "mixsep.models.unet"
    assert json.loads((SHIPPED_BUNDLE / "config.json").read_text())["network_module"] == "mixsep.models.unet"


def test_a_checkpoint_of_a_compiled_run_is_read_back_eager(tmp_path):
    """A run of a compiled recipe saves compile=True; scoring or exporting its checkpoint does not compile."""
    from mixsep.models.separator import load_module

    checkpoint = torch.load(SHIPPED_CKPT, weights_only=True)
    checkpoint["hyper_parameters"]["compile"] = True
    torch.save(checkpoint, tmp_path / "compiled.ckpt")
    module = load_module(tmp_path / "compiled.ckpt")
    assert module.hparams.compile is False and module._compiled is None
    assert torch.equal(module(MIX)[0], load_module(SHIPPED_CKPT)(MIX)[0])


def test_load_separator_honours_mixsep_extensions(monkeypatch):
    monkeypatch.setenv("MIXSEP_EXTENSIONS", "no_such_extension_module")
    with pytest.raises(MixsepError, match="MIXSEP_EXTENSIONS names no_such_extension_module"):
        load_separator(SHIPPED_BUNDLE)


def test_export_replaces_an_earlier_bundle_only_when_told_and_never_through_a_link(tmp_path, capsys):
    from mixsep.export import export_bundle

    folder, outside = tmp_path / "b", tmp_path / "elsewhere.txt"
    outside.write_text("keep me")
    folder.mkdir()
    (folder / "config.json").symlink_to(tmp_path / "dangling")  # a link counts as taken, dangling or not
    with pytest.raises(MixsepError, match="config.json already exists: add --overwrite"):
        export_bundle(SHIPPED_CKPT, folder)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    export_bundle(SHIPPED_CKPT, folder, overwrite=True)
    assert "replaced config.json" in capsys.readouterr().out
    assert outside.read_text() == "keep me" and not (folder / "config.json").is_symlink()
    load_separator(folder)


def _walk_count(value, cap: int) -> int:
    """How the old check walked settings: every reference followed (stopped at ``cap``)."""
    count = 1
    for item in value if isinstance(value, list) else ():
        count += _walk_count(item, cap - count)
        if count >= cap:
            return count
    return count


@pytest.mark.parametrize("levels, words", [(20, "too large (over 100,000 values)"), (40, "nested too deeply")])
def test_shared_lists_in_a_2_kb_checkpoint_are_refused_within_seconds(levels, words, tmp_path):
    """pickle writes a list shared four times over once: a 2 kB file whose settings a walk that follows every
    reference never finishes (4**40 lists); mixsep stops counting at 100,000 values or 32 levels."""
    from mixsep.models.separator import load_module

    path = settings_bomb(tmp_path, levels)
    assert path.stat().st_size < 4096
    notes = torch.load(path, weights_only=True)["hyper_parameters"]["notes"]
    assert _walk_count(notes, 1_000_000) >= 1_000_000  # the old walk: past a million lists and still going
    for load in (load_separator, load_module):
        start = time.perf_counter()
        with pytest.raises(CheckpointError, match=re.escape(words)) as refused:
            load(path)
        assert time.perf_counter() - start < 2 and "\n" not in str(refused.value)


def test_weights_that_hold_no_values_are_refused(tmp_path):
    """A 30 kB checkpoint whose weights are one zero each, viewed (stride 0) as a width-512 U-Net's 3 GB: every
    shape matches, and building that network takes gigabytes. Sparse and meta tensors made the old check's
    torch.isfinite fail with a traceback."""
    path = stride_bomb(tmp_path)
    state = torch.load(path, weights_only=True)["state_dict"]
    declared = sum(t.numel() * t.element_size() for t in state.values())
    assert path.stat().st_size < 100_000 and declared > GIB  # what the network built from it allocates
    with pytest.raises(CheckpointError, match=r"is a view of 4 bytes posing as \[512, 6, 3, 3\]") as refused:
        load_separator(path)
    assert "\n" not in str(refused.value)
    for kind, words in (("sparse", "is a sparse_coo tensor"), ("meta", "a tensor on the meta device")):
        path = checkpoint_with_weight(tmp_path, kind)
        weight = torch.load(path, weights_only=True)["state_dict"]["net.stem.0.weight"]
        with pytest.raises((NotImplementedError, RuntimeError)):
            bool(torch.isfinite(weight).all())  # the old check
        with pytest.raises(CheckpointError, match=words) as refused:
            load_separator(path)
        assert "\n" not in str(refused.value)


def test_a_graph_that_loops_for_ever_is_stopped_and_one_that_gives_the_mix_is_refused(tmp_path, monkeypatch):
    """Both graphs' SHA-256 are recorded (what their author does too): ONNX Runtime runs the Loop of 10**15 steps
    until stopped, and gives the mix back as both sources; open_onnx stops the first within its time limit and
    holds the second against the bundle's weights under PyTorch."""
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from mixsep.models import onnx_graph as opening

    looping = onnx_graph(tmp_path, "loop", "loop")
    assert (looping / "model.onnx").stat().st_size < 1024
    session = onnxruntime.InferenceSession(str(looping / "model.onnx"), providers=["CPUExecutionProvider"])
    stop = onnxruntime.RunOptions()
    timer = threading.Timer(1, lambda: setattr(stop, "terminate", True))
    timer.start()
    with pytest.raises(Fail, match="terminate"):  # still looping after a second: stopped by the flag
        session.run(None, {"mix": MIX.numpy()}, stop)
    timer.cancel()
    assert stop.terminate
    monkeypatch.setattr(opening, "PROBE_SECONDS", 1.0)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="runs longer than 1 s on 2 images") as refused:
        opening.open_onnx(looping)
    assert time.perf_counter() - start < 5 and "\n" not in str(refused.value)

    mix = onnx_graph(tmp_path, "mix", "mix")
    session = onnxruntime.InferenceSession(str(mix / "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"mix": MIX.numpy()})[1], MIX.numpy())  # the old way: the mix back
    with pytest.raises(CheckpointError, match="does not give the weights' outputs") as refused:
        opening.open_onnx(mix)
    assert "\n" not in str(refused.value)


def test_a_scores_file_that_unpacks_to_megabytes_is_refused_before_it_is_loaded(tmp_path):
    from mixsep.record.scores import read_scores

    run = scores_bomb(tmp_path)
    with np.load(run / "scores.npz") as data:  # the old reader: 8 MB per key out of a 20 kB file
        assert data["mnist_psnr"].nbytes > 100 * (run / "scores.npz").stat().st_size
    with pytest.raises(MixsepError, match="holds 8,000,128 bytes, more than 100,000 pairs' scores") as refused:
        read_scores(run)
    assert "\n" not in str(refused.value)


def test_a_device_this_machine_lacks_is_one_line(monkeypatch):
    from mixsep.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="there is no CUDA GPU on this machine: use device='cpu'") as refused:
        load_separator(SHIPPED_BUNDLE, device="cuda")
    assert "\n" not in str(refused.value)
    for device, words in (("meta", "not meta"), ("gpu", "is not a device")):
        with pytest.raises(ConfigError, match=words):
            load_separator(SHIPPED_CKPT, device=device)


def test_export_takes_only_a_checkpoint_inside_the_run_folder(tmp_path):
    """A run folder's metrics.json names the file export reads and publishes: one elsewhere (or a link inside
    leading out) is refused, and nothing is written; a run folder moved since (its record names the old place)
    still stands for its own checkpoint."""
    from mixsep.export import export_bundle, tested_checkpoint

    for link in (False, True):
        run = run_naming_elsewhere(tmp_path, link)
        with pytest.raises(MixsepError, match="is not inside the run folder") as refused:
            export_bundle(run, tmp_path / "b")
        assert "\n" not in str(refused.value) and not (tmp_path / "b").exists()
    moved = tmp_path / "moved"
    (moved / "checkpoints").mkdir(parents=True)
    (moved / "checkpoints" / "best-epoch3.ckpt").write_bytes(b"")
    (moved / "metrics.json").write_text(json.dumps({"checkpoint": "/old/place/checkpoints/best-epoch3.ckpt"}))
    assert tested_checkpoint(moved, None) == (moved / "checkpoints" / "best-epoch3.ckpt", moved / "metrics.json")
