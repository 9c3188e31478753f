"""Outputs never go where they should not (issue 43): ``separate``, ``mix`` and ``report`` run as a user types them
(``run_here``) against real folders crafted on disk: a symbolic link prepared where an output goes (a marker file
outside, checksummed), a linked output folder the user did not name, an output folder that holds the inputs, two
inputs with one stem, and an earlier run's outputs. Each attack is first shown to work the plain way (PIL or
``Path.write_text`` writes through the link), then mixsep refuses or replaces the link, never its target."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixsep.images import read_image
from tests.helpers import run_here

SEPARATE, MIX, REPORT = (["python", "-m", f"mixsep.{c}"] for c in ("separate", "mix", "report"))


def checksums(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links as links: their target named, never read through) and its SHA-256."""
    digest = lambda p: f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def image(path: Path, seed: int = 0, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def marker(tmp_path: Path) -> Path:
    """A file outside every folder a command is given: what a prepared link points at."""
    victim = tmp_path / "outside" / "victim.png"
    image(victim, seed=99)
    return victim


def one_line(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("mixsep: ")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


# --------------------------------------------------------------------------- separate
def test_a_link_in_the_output_folder_is_replaced_never_written_through(tmp_path, capfd):
    victim = marker(tmp_path)
    before = checksums(victim.parent)
    mix = image(tmp_path / "in" / "x.png")
    link = tmp_path / "in" / "separated" / "x.gray.png"
    link.parent.mkdir()
    link.symlink_to(victim)
    plain = tmp_path / "plain.png"  # the plain way (what separate did: PIL's save) writes through a link
    plain.symlink_to(tmp_path / "plain_target.png")
    Image.new("RGB", (32, 32)).save(plain)
    assert (tmp_path / "plain_target.png").is_file()

    refused = run_here([*SEPARATE, str(mix)], capfd)
    assert "x.gray.png already exists: add --overwrite" in one_line(refused)
    assert not (link.parent / "x.color.png").exists() and not (link.parent / "separations.png").exists()
    done = run_here([*SEPARATE, str(mix), "--overwrite"], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not link.is_symlink() and Image.open(link).size == (32, 32)  # the link itself was replaced
    assert checksums(victim.parent) == before  # its target never written


def test_a_linked_output_folder_the_user_did_not_name_is_refused(tmp_path, capfd):
    victim = marker(tmp_path)
    before = checksums(victim.parent)
    mix = image(tmp_path / "in" / "x.png")
    (tmp_path / "in" / "separated").symlink_to(victim.parent, target_is_directory=True)
    line = one_line(run_here([*SEPARATE, str(mix)], capfd))
    assert "separated is a symbolic link" in line and "--out" in line
    assert checksums(victim.parent) == before
    done = run_here([*SEPARATE, str(mix), "--out", str(tmp_path / "in" / "separated")], capfd)  # named: followed
    assert done.returncode == 0, done.stderr[-3000:]
    assert (victim.parent / "x.gray.png").is_file()


def test_the_input_folder_as_out_never_replaces_an_input(tmp_path, capfd):
    folder = tmp_path / "in"
    image(folder / "x.png")
    image(folder / "separations.png", seed=1)  # an input named like the contact sheet
    before = checksums(folder)
    line = one_line(run_here([*SEPARATE, str(folder), "--out", str(folder), "--overwrite"], capfd))
    assert "separations.png would replace an input: choose another --out" in line
    assert checksums(folder) == before  # nothing replaced, nothing added


def test_inputs_sharing_a_stem_get_one_result_each(tmp_path, capfd):
    folder = tmp_path / "in"
    image(folder / "a.png", seed=1)
    Image.open(image(folder / "src.png", seed=2)).save(folder / "a.jpg", quality=95)
    (folder / "src.png").unlink()
    done = run_here([*SEPARATE, str(folder)], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "keep their whole names: a.jpg -> a.jpg.gray.png, a.png -> a.png.gray.png" in done.stdout
    out = folder / "separated"
    assert sorted(p.name for p in out.iterdir()) == [
        "a.jpg.color.png",
        "a.jpg.gray.png",
        "a.png.color.png",
        "a.png.gray.png",
        "separations.png",
    ]
    for name in ("a.png", "a.jpg"):  # each result is its own input's: as that input separated alone
        alone = tmp_path / f"alone_{name}"
        assert run_here([*SEPARATE, str(folder / name), "--out", str(alone)], capfd).returncode == 0
        for source in ("gray", "color"):
            mine = read_image(out / f"{name}.{source}.png").values
            assert np.array_equal(mine, read_image(alone / f"a.{source}.png").values)


def test_an_earlier_run_is_replaced_only_with_overwrite(tmp_path, capfd):
    mix = image(tmp_path / "x.png")
    assert run_here([*SEPARATE, str(mix)], capfd).returncode == 0
    out = tmp_path / "separated"
    earlier = checksums(out)
    image(tmp_path / "y.png", seed=3)
    line = one_line(run_here([*SEPARATE, str(tmp_path)], capfd))
    assert "already exists: add --overwrite to replace it, or choose another --out" in line
    assert checksums(out) == earlier  # refused before anything was written: no y.* either
    done = run_here([*SEPARATE, str(tmp_path), "--overwrite"], capfd)
    assert done.returncode == 0 and f"--overwrite: replacing 3 earlier files in {out}" in done.stdout
    assert {"y.gray.png", "y.color.png"} <= set(checksums(out))


# --------------------------------------------------------------------------- mix
def test_mix_replaces_a_link_at_o_only_with_overwrite_and_never_its_target(tmp_path, capfd):
    victim = marker(tmp_path)
    before = checksums(victim.parent)
    gray, color = image(tmp_path / "g.png", seed=1), image(tmp_path / "c.png", seed=2)
    out = tmp_path / "m.png"
    out.symlink_to(victim)
    refused = run_here([*MIX, str(gray), str(color), "-o", str(out)], capfd)
    assert "m.png already exists: add --overwrite" in one_line(refused)
    done = run_here([*MIX, str(gray), str(color), "-o", str(out), "--overwrite"], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not out.is_symlink() and checksums(victim.parent) == before
    line = one_line(run_here([*MIX, str(gray), str(color), "-o", str(gray), "--overwrite"], capfd))
    assert "g.png would replace an input: choose another -o" in line


def test_mix_test_pairs_refuse_a_linked_subfolder_and_an_earlier_export(tmp_path, tiny_root, capfd):
    victim = marker(tmp_path)
    before = checksums(victim.parent)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "gray").symlink_to(victim.parent, target_is_directory=True)
    data = ["--data-root", str(tiny_root), "--cache-dir", str(tmp_path / "cache")]
    line = one_line(run_here([*MIX, "--test-pairs", "2", "-o", str(pairs), *data], capfd))
    assert "gray is a symbolic link" in line and checksums(victim.parent) == before
    (pairs / "gray").unlink()
    assert run_here([*MIX, "--test-pairs", "2", "-o", str(pairs), *data], capfd).returncode == 0
    earlier = checksums(pairs)
    line = one_line(run_here([*MIX, "--test-pairs", "2", "-o", str(pairs), *data], capfd))
    assert "00000.png (and 5 more) already exists: add --overwrite" in line and checksums(pairs) == earlier


# --------------------------------------------------------------------------- report
@pytest.fixture
def scored_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    scores = {"test/mnist_psnr": 30.0, "test/mnist_ssim": 0.9, "test/cifar_psnr": 30.0, "test/cifar_ssim": 0.9}
    (run / "metrics.json").write_text(json.dumps(scores) + "\n")
    return run


def test_report_never_writes_through_a_link_and_replaces_only_with_overwrite(scored_run, tmp_path, tiny_root, capfd):
    victim = marker(tmp_path)
    before = checksums(victim.parent)
    board = tmp_path / "board.md"
    board.symlink_to(victim)
    plain = tmp_path / "plain.md"  # the plain way (Path.write_text, what the report does) follows links
    plain.symlink_to(tmp_path / "plain_target.md")
    plain.write_text("through")
    assert (tmp_path / "plain_target.md").read_text() == "through"
    data = ["--data-root", str(tiny_root), "--cache-dir", str(tmp_path / "cache")]
    for flags in ([], ["--overwrite"]):
        line = one_line(run_here([*REPORT, str(scored_run.parent), "-o", str(board), *flags, *data], capfd))
        assert "board.md is a symbolic link" in line and "choose another -o / --chart" in line
    assert checksums(victim.parent) == before
    line = one_line(run_here([*REPORT, str(scored_run), "-o", str(scored_run / "metrics.json"), "--overwrite"], capfd))
    assert "is a run record the report reads" in line
    chart = image(tmp_path / "chart.png")
    earlier = checksums(tmp_path / "runs") | {"chart": hashlib.sha256(chart.read_bytes()).hexdigest()}
    line = one_line(run_here([*REPORT, str(scored_run.parent), "--chart", str(chart), *data], capfd))
    assert "chart.png already exists: add --overwrite" in line
    assert checksums(tmp_path / "runs") | {"chart": hashlib.sha256(chart.read_bytes()).hexdigest()} == earlier
    done = run_here([*REPORT, str(scored_run.parent), "--chart", str(chart), "--overwrite", *data], capfd)
    assert done.returncode == 0 and f"mixsep.report: replacing {chart}" in done.stderr
    assert hashlib.sha256(chart.read_bytes()).hexdigest() != earlier["chart"]
    # the default chart (leaderboard.png in the folder reported on) is the report's own: a second report replaces it
    for _ in range(2):
        done = run_here([*REPORT, str(scored_run.parent), *data], capfd)
        assert done.returncode == 0, done.stderr[-2000:]
    assert f"mixsep.report: replacing {scored_run.parent / 'leaderboard.png'}" in done.stderr
