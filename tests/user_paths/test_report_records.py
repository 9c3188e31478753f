"""Run records from elsewhere (a downloaded run folder, a colleague's sweep) given to ``mixsep report``: a
metrics.json, status.json or scores.npz not of the kinds mixsep writes is left out with a line naming its file and
field, the other runs still ranked; nothing left is one ``mixsep:`` line. And an image too large to decode is
refused from its header, with little memory used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixsep.data.sources import parse_pair
from mixsep.report.tables import minutes
from tests.helpers import run_here
from tests.user_paths.bad_rows_records import black_png

ROOT = Path(__file__).resolve().parents[2]
REAL = json.loads((ROOT / "results" / "best_cpu_range" / "metrics.json").read_text())
REPORT = ["python", "-m", "mixsep.report"]

# field, value, what the old report did with it (the call that raised), the exception
BAD_FIELDS = [
    ("test_pairs", "abc", lambda v: int(v), ValueError),
    ("test_pairs", [1], lambda v: int(v), TypeError),
    ("sources", 5, lambda v: parse_pair(v), AttributeError),
    ("sources", ["a"], lambda v: {(v, 1)}, TypeError),
    ("params", "x", lambda v: f"{v:,}", ValueError),
    ("train_seconds", "x", lambda v: minutes(v), TypeError),
]


@pytest.fixture
def report_env(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXSEP_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("MIXSEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(folder: Path, record: object, name: str = "metrics.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(record if isinstance(record, str) else json.dumps(record))
    return folder


def _good(folder: Path) -> Path:
    return _run(folder, {**REAL, "test_pairs": 12})


@pytest.mark.parametrize("field, value, old_use, error", BAD_FIELDS, ids=[f"{f}={v}" for f, v, *_ in BAD_FIELDS])
def test_the_old_report_raised_on_each_bad_field(field, value, old_use, error):
    with pytest.raises(error):
        old_use(value)


def test_records_of_other_kinds_are_left_out_each_named_and_the_rest_ranked(report_env, capfd):
    t = report_env
    _good(t / "dl" / "good")
    bad = {f"{field}={json.dumps(value)}": {**REAL, field: value} for field, value, *_ in BAD_FIELDS}
    for name, record in bad.items():
        _run(t / "dl" / name, record)
    _run(t / "dl" / "deep", "[" * 100_000)
    _run(t / "dl" / "huge", json.dumps({**REAL, "notes": "x" * (2 << 20)}))
    _run(_good(t / "dl" / "bad_status"), {"status": ["running"], "step": 3}, "status.json")
    done = run_here(REPORT + ["dl", "-o", "board.md"], capfd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    board = (t / "board.md").read_text()
    assert "| dl/good |" in board and "| dl/bad_status |" in board  # ranked: its scores are fine
    for name, (field, *_) in zip(bad, BAD_FIELDS):
        said = f"left out dl/{name}/metrics.json: its field {field} is"
        assert said in done.stderr and f"- dl/{name}/metrics.json: its field {field}" in board, done.stderr
        assert f"| dl/{name} |" not in board
    assert "left out dl/deep/metrics.json: nested too deeply" in done.stderr
    assert "left out dl/huge/metrics.json: 2,09" in done.stderr and "a run record's 1,048,576" in done.stderr
    assert 'left out dl/bad_status/status.json: its field status is a list (["running"])' in done.stderr


@pytest.mark.parametrize("record", ["[]", '"a string"', json.dumps({**REAL, "params": "x"})])
def test_nothing_left_is_one_line(record, report_env, capfd):
    _run(report_env / "rep1" / "runA", record)
    done = run_here(REPORT + ["rep1"], capfd)
    lines = [line for line in done.stderr.splitlines() if line.startswith("mixsep")]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("mixsep: no run record under rep1 is one mixsep wrote: ")
    assert "rep1/runA/metrics.json" in lines[0]


def test_a_sweep_job_of_other_kinds_is_a_row_saying_so(report_env, capfd):
    sweep = report_env / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "1" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: [1, 2]\n")  # not the mapping Hydra writes: no log axes, no error
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("[1, {a: 2}, model.lr=0.1]\n")
    _good(sweep / "0")
    _run(sweep / "1", {"status": "completed", "requeues": "many"}, "status.json")
    done = run_here(REPORT + ["sweep", "-o", "board.md"], capfd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    board = (report_env / "board.md").read_text()
    assert "left out: sweep/1/status.json: its field requeues is a string" in board
    assert "| 0 **← pick** | 0.1 |" in board or "| 0 | 0.1 |" in board


def test_compare_with_scores_of_other_kinds_is_one_line(report_env, capfd):
    good = dict(pair=np.arange(4), mnist_psnr=np.ones(4), cifar_psnr=np.ones(4))
    for name, arrays in {"a": good, "b": {**good, "mnist_psnr": np.ones((4, 2))}}.items():
        (report_env / name).mkdir()
        np.savez(report_env / name / "scores.npz", **arrays)
    with pytest.raises(ValueError):  # what the old comparison did with them
        np.asarray(good["mnist_psnr"]) - np.ones((4, 2))
    done = run_here(REPORT + ["--compare", "a", "b"], capfd)
    lines = [line for line in done.stderr.splitlines() if line.startswith("mixsep")]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and "b/scores.npz: its mnist_psnr (float64, shape (4, 2)) is not one number" in lines[0]


MEASURE = """
import re, sys
from PIL import Image
from mixsep.errors import MixsepError
from mixsep.images import read_image

def peak_growth(call):
    # kB the peak resident memory (VmHWM, reset first: clear_refs 5) grows by while call runs
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    before = hwm()
    said = call()
    return hwm() - before, said

def refuse(path):
    try:
        read_image(path)
    except MixsepError as err:
        return str(err)

def decode(path):
    with Image.open(path) as img:
        img.load()

refused, said = peak_growth(lambda: refuse(sys.argv[1]))
decoded, _ = peak_growth(lambda: decode(sys.argv[1]))
print(refused, decoded, said, sep="\\n")
"""


def test_an_image_too_large_is_refused_before_it_is_decoded(tmp_path):
    """A 10000x8900 black PNG of ~260 kB, under PIL's own pixel limit: PIL decodes it into ~267 MB (mixsep's
    floats were gigabytes); mixsep refuses it from its header, its peak memory barely growing (Linux's VmHWM)."""
    big = black_png(tmp_path / "big.png")
    assert big.stat().st_size < 1 << 20
    done = subprocess.run([sys.executable, "-c", MEASURE, str(big)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    refused_kb, pil_kb, said = done.stdout.strip().split("\n", 2)
    assert int(pil_kb) > 200_000, "PIL itself decodes the whole image"
    assert int(refused_kb) < 20_000, f"mixsep's refusal used {refused_kb} kB"
    assert "big.png: 10000x8900 pixels, over mixsep's cap of 4096x4096" in said


def _alias_bomb(levels: int) -> str:
    """YAML of a few hundred bytes whose aliases expand to 9**levels strings (Hydra writes no aliases)."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nhydra:\n  sweeper:\n    params:\n      model.lr: *l{levels}\n"


def _sweep(folder: Path, multirun: str) -> Path:
    for job, lr in enumerate(["0.001", "0.01"]):
        (folder / str(job) / ".hydra").mkdir(parents=True)
        (folder / str(job) / ".hydra" / "overrides.yaml").write_text(f"- model.lr={lr}\n- seed={job}\n")
        _run(folder / str(job), {**REAL, "test_pairs": 12, "objective": 8.0 + job})
    (folder / "multirun.yaml").write_text(multirun)
    return folder


def test_a_sweep_yaml_of_nested_aliases_is_left_out_saying_why(report_env, capfd):
    import yaml

    small = _alias_bomb(5)  # the old way: safe_load then str() of the spec, as log_sampled did
    assert len(str(yaml.safe_load(small)["hydra"])) > 1000 * len(small)  # 11 levels: ~10**11 bytes
    sweep = _sweep(report_env / "sweep", _alias_bomb(11))
    (sweep / "1" / ".hydra" / "overrides.yaml").write_text(_alias_bomb(11).split("hydra:")[0] + "x: *l11\n")
    done = run_here(REPORT + ["sweep", "-o", "board.md"], capfd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    board = (report_env / "board.md").read_text()
    assert "- sweep/multirun.yaml: not YAML Hydra writes (line 1: an anchor or alias" in board
    assert "- sweep/1/.hydra/overrides.yaml: not YAML Hydra writes (line 1: an anchor or alias" in board
    assert "| 0 | 0.001 | 0 |" in board  # the rest of the sweep is still reported
    assert "mixsep.report: left out sweep/multirun.yaml: not YAML Hydra writes" in done.stderr


def test_a_sweep_yaml_over_its_cap_is_left_out_saying_why(report_env, capfd):
    sweep = _sweep(report_env / "sweep", "hydra: {}\n" + "#" * (1 << 20))
    done = run_here(REPORT + ["sweep", "-o", "board.md"], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"- {sweep.name}/multirun.yaml: more than 1,048,576 bytes" in (report_env / "board.md").read_text()


def test_the_objective_plot_replaces_a_link_placed_there_never_writing_through_it(report_env, capfd):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    victim = report_env / "victim" / "keep.png"
    victim.parent.mkdir()
    victim.write_text("ORIGINAL")
    old = report_env / "old.png"
    old.symlink_to(victim)
    fig = plt.figure()
    fig.savefig(old)  # the old way: savefig writes through the link
    plt.close(fig)
    assert victim.read_bytes().startswith(b"\x89PNG")
    victim.write_text("ORIGINAL")
    log_lr = "hydra:\n  sweeper:\n    params:\n      model.lr: tag(log, interval(1e-4, 1))\n"
    sweep = _sweep(report_env / "sweep", log_lr)
    (sweep / "objective.png").symlink_to(victim)
    done = run_here(REPORT + ["sweep", "-o", "board.md"], capfd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert victim.read_text() == "ORIGINAL"
    plot = sweep / "objective.png"
    assert not plot.is_symlink() and plot.read_bytes().startswith(b"\x89PNG")
    assert f"mixsep.report: replacing {plot.relative_to(report_env)}" in done.stderr
