"""Values from files are data, and a user's own score, source and extension are checked up front: a model file's
precision that is a config template reads nothing of this machine; a score that gives NaN in training is shown as
failed, not as "not scored"; an evaluation on other sources than the model's says so; a report ranks what it can
and says what it left out; extensions are imported only as named (never anything else of the start folder), and a
wrong name is one line that says where it came from, in every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from mixsep.errors import ConfigError
from tests.helpers import PROJECT_ROOT, TINY_SIZES, run_here
from tests.user_paths.bad_rows_extensions import SCORE, SHIPPED, SOURCE, checkpoint_with_precision

pytestmark = pytest.mark.slow

EVALUATE = ["python", "-m", "mixsep.evaluate"]
TEMPLATE = "${oc.env:MIXSEP_TEST_SECRET}"


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("mixsep: ")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    return lines[0]


@pytest.fixture
def secret(monkeypatch, tmp_path) -> str:
    value = f"secret-{tmp_path.name}"
    monkeypatch.setenv("MIXSEP_TEST_SECRET", value)
    # the old way: a file's string put into a config is resolved as a template when the config is read
    cfg = OmegaConf.create({"trainer": {"precision": None}})
    cfg.trainer.precision = TEMPLATE
    assert OmegaConf.to_container(cfg, resolve=True)["trainer"]["precision"] == value
    return value


def evaluate_args(tiny_root: Path, tmp_path: Path, ckpt: Path, *more: str) -> list[str]:
    data = [f"data.root={tiny_root}", f"data.cache_dir={tmp_path / 'cache'}", *TINY_SIZES, "samples=2"]
    return EVALUATE + [f"ckpt_path={ckpt}", *data, "trainer.accelerator=cpu", *more, f"hydra.run.dir={tmp_path / 'e'}"]


def test_a_precision_template_in_a_model_file_reads_nothing_of_this_machine(secret, tiny_root, tmp_path, capfd):
    sent = checkpoint_with_precision(tmp_path, TEMPLATE)
    done = run_here(evaluate_args(tiny_root, tmp_path, sent), capfd)
    line = one_line(done)
    assert TEMPLATE in line and "trainer.precision=32-true" in line
    assert secret not in done.stdout + done.stderr
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_an_evaluation_on_other_sources_says_so_in_the_log_and_the_report_row(secret, tiny_root, tmp_path, capfd):
    import torch

    sent = checkpoint_with_precision(tmp_path, TEMPLATE)
    ckpt = torch.load(sent, weights_only=True)
    ckpt["mixsep_sources"] = "fashion_mnist+cifar10"
    torch.save(ckpt, sent)
    done = run_here(evaluate_args(tiny_root, tmp_path, sent, "trainer.precision=32-true"), capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "was trained on fashion_mnist+cifar10 and is scored here on mnist+cifar10" in done.stdout + done.stderr
    text = (tmp_path / "e" / "metrics.json").read_text()
    metrics = json.loads(text)
    assert (metrics["trained_on"], metrics["sources"], metrics["precision"]) == (
        "fashion_mnist+cifar10",
        "mnist+cifar10",
        "32-true",
    )
    assert secret not in text + done.stdout + done.stderr
    report = ["python", "-m", "mixsep.report", str(tmp_path / "e"), "--data-root", str(tiny_root)]
    board = run_here([*report, "--cache-dir", str(tmp_path / "cache"), "--chart", str(tmp_path / "c.png")], capfd)
    assert board.returncode == 0, board.stderr[-3000:]
    assert "| mnist+cifar10 (trained on fashion_mnist+cifar10) |" in board.stdout


GRAY_NAN = "torch.where((target[:, 0] == target[:, 1]).flatten(1).all(1), float('nan'), 0.5)"


def test_a_score_that_gives_nan_in_training_is_shown_as_failed_not_as_unscored(
    tiny_overrides, tiny_root, tmp_path, capfd, monkeypatch, recwarn
):
    from mixsep.models.metrics import SCORES
    from mixsep.report.tables import fmt

    assert fmt(float("nan")) == fmt(None) == "-"  # the old way: a failed score looked like one never computed
    monkeypatch.chdir(tmp_path)
    # finite on the probe batch (colour targets), NaN for gray targets (three equal channels), as MNIST's are
    (tmp_path / "gray_nan.py").write_text(SCORE.format(name="gray_nan", body=GRAY_NAN))
    declared = dict(SCORES)
    try:
        run = tmp_path / "runs" / "new"
        command = ["python", "-m", "mixsep.run", *tiny_overrides, "extensions=[./gray_nan.py]"]
        done = run_here([*command, f"hydra.run.dir={run}"], capfd)
    finally:  # this process's runs after this test know nothing of the score
        SCORES.clear()
        SCORES.update(declared)
        sys.modules.pop("gray_nan", None)
    assert done.returncode == 0, done.stderr[-3000:]
    said = "score gray_nan gives NaN for some images (a failure of its function): its mean is NaN, shown as failed"
    assert any(said in str(warning.message) for warning in recwarn)  # a warning line on stderr outside pytest
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/mnist_gray_nan"] is None and metrics["test/cifar_gray_nan"] == pytest.approx(0.5)
    old = tmp_path / "runs" / "old"  # the same run scored before the score existed
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if "gray_nan" not in k}))
    report = ["python", "-m", "mixsep.report", str(tmp_path / "runs"), "--data-root", str(tiny_root)]
    board = run_here([*report, "--cache-dir", str(tmp_path / "cache"), "--chart", str(tmp_path / "c.png")], capfd)
    assert board.returncode == 0, board.stderr[-3000:]
    header = next(line for line in board.stdout.splitlines() if line.startswith("| # |")).split("|")
    rows = {line.split("|")[2].strip(): line.split("|") for line in board.stdout.splitlines() if "runs/" in line}
    column = header.index(" MNIST GRAY_NAN ")
    assert rows["runs/new"][column].strip() == "failed" and rows["runs/old"][column].strip() == "-"


def _metrics(folder: Path, sources: str) -> Path:
    folder.mkdir(parents=True)
    scores = {f"test/{s}_{k}": v for s in ("mnist", "cifar") for k, v in (("psnr", 20.0), ("ssim", 0.5))}
    (folder / "metrics.json").write_text(json.dumps({**scores, "sources": sources, "test_pairs": 12, "model": "x"}))
    return folder


def test_a_report_ranks_the_runs_it_can_and_says_which_it_left_out(tiny_root, tmp_path, capfd, monkeypatch):
    from mixsep.report.leaderboard import baseline_rows

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    _metrics(runs / "here", "mnist+cifar10")
    _metrics(runs / "undeclared", "toy_digits+cifar10")  # a source of one's own, its extension not at hand
    _metrics(runs / "no_files", "kmnist+cifar10")  # a declared source whose files are not here
    with pytest.raises(ConfigError):  # the old way: the report's baselines for that group stopped it as a whole
        baseline_rows(str(tiny_root), str(tmp_path / "cache"), 12, "toy_digits+cifar10")
    report = ["python", "-m", "mixsep.report", "runs", "--data-root", str(tiny_root), "-o", "board.md"]
    done = run_here([*report, "--cache-dir", str(tmp_path / "cache")], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    board = (tmp_path / "board.md").read_text()
    ranked = [line for line in board.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert any("runs/here" in line for line in ranked)
    left_out = board.split("Left out (not ranked here):", 1)[1]
    assert "runs/undeclared: its sources toy_digits+cifar10 are not at hand here (data/gray=toy_digits" in left_out
    assert "runs/no_files: its sources kmnist+cifar10 are not at hand here (could not load" in left_out
    assert done.stderr.count("mixsep.report: left out") == 2
    assert (tmp_path / "board.png").is_file()


def _planted(folder: Path) -> Path:
    """A downloaded folder: modules named like what mixsep imports, and the extension the user names; each leaves
    its name in a marker file when imported."""
    marker = folder / "ran.txt"
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("safetensors.py", "onnxruntime.py"):
        (folder / name).write_text(code)
    (folder / "hydra_plugins" / "planted").mkdir(parents=True)
    (folder / "hydra_plugins" / "planted" / "__init__.py").write_text(code)
    score = SCORE.format(name="named_mae", body="(pred - target).abs().mean(dim=(1, 2, 3))")
    (folder / "my_score.py").write_text(code + score)
    return marker


def _python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MIXSEP_EXTENSIONS")}
    run = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env={**environment, **env})
    return run


@pytest.mark.parametrize("named", ["extensions=[my_score]", "extensions=[./my_score.py]", "MIXSEP_EXTENSIONS"])
def test_a_named_extension_is_imported_and_nothing_else_of_the_start_folder(named, tiny_root, tmp_path):
    folder = tmp_path / "downloaded"
    folder.mkdir()
    marker = _planted(folder)
    shown = _python(["-c", "import safetensors, onnxruntime"], folder)  # the attack, with plain Python
    assert shown.returncode == 0 and marker.read_text() == "safetensors\nonnxruntime\n"
    marker.unlink()
    config, env = ([named], {}) if named.startswith("extensions") else ([], {named: "my_score"})
    args = evaluate_args(tiny_root, tmp_path, SHIPPED, *config)[1:]
    done = _python(args, folder, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.read_text() == "my_score\n"  # the named extension ran, nothing else of the folder
    assert "test/mnist_named_mae" in json.loads((tmp_path / "e" / "metrics.json").read_text())


def _command(name: str, tmp_path: Path) -> list[str]:
    image = tmp_path / "mix.png"
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(image)
    return {
        "separate": ["python", "-m", "mixsep.separate", str(image), "--out", str(tmp_path / "out")],
        "export": ["python", "-m", "mixsep.export", str(SHIPPED), str(tmp_path / "out")],
        "report": ["python", "-m", "mixsep.report", str(PROJECT_ROOT / "results"), "-o", str(tmp_path / "out.md")],
    }[name]


WRONG_NAMES = {  # MIXSEP_EXTENSIONS, files in the current folder, and the words of the one line
    "missing-file": ("my_net.py", {}, "the environment variable MIXSEP_EXTENSIONS names my_net.py, but there is no"),
    "path-without-py": ("./my_net", {"my_net.py": "x = 1\n"}, "MIXSEP_EXTENSIONS names ./my_net, which is not a"),
    "source-grey": (
        "grey_env",
        {"grey_env.py": SOURCE.format(cls="GreyEnv", kind="grey", names=("g",))},
        "source 'GreyEnv': kind must be 'gray' or 'color', not 'grey'",
    ),
    "source-duplicate": (
        "dup_env",
        {"dup_env.py": SOURCE.format(cls="DupEnv", kind="color", names=("cifar10",))},
        "a color source named cifar10 is already declared",
    ),
}


@pytest.mark.parametrize("command", ["separate", "export", "report"])
@pytest.mark.parametrize("case", list(WRONG_NAMES))
def test_a_wrong_extension_is_one_line_in_every_command(command, case, tmp_path, capfd, monkeypatch):
    name, files, words = WRONG_NAMES[case]
    monkeypatch.chdir(tmp_path)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    monkeypatch.setenv("MIXSEP_EXTENSIONS", name)
    done = run_here(_command(command, tmp_path), capfd)
    assert words in one_line(done)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.md").exists()


@pytest.mark.parametrize("how", ["my_ext", "my_ext.py", "./my_ext.py", "absolute", "MIXSEP_EXTENSIONS"])
def test_an_extension_file_is_imported_from_the_path_named_without_touching_python_s_path(how, tmp_path, monkeypatch):
    from mixsep.extensions import load_extensions

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran.txt"
    (tmp_path / "my_ext.py").write_text(f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n")
    name = {"absolute": str(tmp_path / "my_ext.py"), "MIXSEP_EXTENSIONS": "my_ext"}.get(how, how)
    if how == "MIXSEP_EXTENSIONS":
        monkeypatch.setenv(how, name)
    path_before = list(sys.path)
    try:
        assert load_extensions([] if how == "MIXSEP_EXTENSIONS" else [name]) == [name]
        load_extensions([name, "./my_ext.py"])  # named again, or by another spelling: imported once
        assert Path(sys.modules["my_ext"].__file__) == tmp_path / "my_ext.py"
    finally:
        sys.modules.pop("my_ext", None)
    assert marker.read_text() == "my_ext\n" and sys.path == path_before
