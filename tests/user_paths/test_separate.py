"""``python -m mixsep.separate`` and ``python -m mixsep.mix`` on PNGs written from tiny real-format data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixsep import mix as mix_cli
from mixsep import separate as separate_cli
from mixsep.models.metrics import image_metrics
from tests.helpers import requires_real_data

SHIPPED = Path(__file__).resolve().parents[2] / "results" / "best_cpu" / "model.ckpt"  # a U-Net: mix-consistent


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255


@pytest.fixture
def exported(tiny_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pairs"
    assert (
        mix_cli.main(
            ["--test-pairs", "6", "-o", str(out), "--data-root", str(tiny_root), "--cache-dir", str(tmp_path / "cache")]
        )
        == 0
    )
    return out


def test_separate_writes_two_consistent_sources_per_mix(exported, capsys):
    before = {p: p.read_bytes() for p in (exported / "mix").iterdir()}
    assert separate_cli.main([str(exported / "mix"), "--ckpt", str(SHIPPED)]) == 0
    out = exported / "mix" / "separated"
    assert (out / "separations.png").stat().st_size > 1000
    for path in sorted(before):
        gray, color = pixels(out / f"{path.stem}.gray.png"), pixels(out / f"{path.stem}.color.png")
        assert gray.shape == color.shape == (32, 32, 3)
        assert np.abs((gray + color) / 2 - pixels(path)).max() <= 1 / 255 + 1e-9
        assert np.allclose(gray[..., 0], gray[..., 2])  # the gray source is gray
    assert {p: p.read_bytes() for p in before} == before  # inputs untouched
    assert "separated 6 of 6 images" in capsys.readouterr().out


def test_separate_scores_match_evaluate_within_8_bit_rounding(compose, exported, tiny_root, tmp_path):
    from mixsep.evaluate import evaluate

    out = tmp_path / "sep"
    assert separate_cli.main([str(exported / "mix"), "--ckpt", str(SHIPPED), "--out", str(out)]) == 0
    scores = {}
    for source, truth in (("gray", "gray"), ("color", "color")):
        metric = image_metrics()
        for path in sorted((exported / truth).iterdir()):
            pred = torch.from_numpy(pixels(out / f"{path.stem}.{source}.png")).permute(2, 0, 1)[None].float()
            metric.update(pred, torch.from_numpy(pixels(path)).permute(2, 0, 1)[None].float())
        scores[source] = float(metric.compute()["psnr"])
    cfg = compose(
        "evaluate",
        [
            f"data.root={tiny_root}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.test_pairs=6",
            "data.val_holdout=8",
            "data.val_pairs=8",
            f"ckpt_path={SHIPPED}",
            "samples=2",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
        ],
        tmp_path / "eval",
    )
    reference = evaluate(cfg)
    assert scores["gray"] == pytest.approx(reference["test/mnist_psnr"], abs=0.5)
    assert scores["color"] == pytest.approx(reference["test/cifar_psnr"], abs=0.5)


def test_wrong_size_is_refused_with_the_file_named_unless_resize(tmp_path, capsys):
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(big)
    assert separate_cli.main([str(big), "--ckpt", str(SHIPPED)]) == 1
    err = capsys.readouterr().err
    assert str(big) in err and "40x48" in err and "--resize" in err
    assert separate_cli.main([str(big), "--ckpt", str(SHIPPED), "--resize"]) == 0
    with Image.open(tmp_path / "in" / "separated" / "big.gray.png") as img:
        assert img.size == (40, 48)  # resized back to the input's size
    assert "resized to 32x32" in capsys.readouterr().out


def test_a_tiny_image_is_refused_even_with_resize(tmp_path, capsys):
    dot = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 3), 128, dtype=np.uint8)).save(dot)
    assert separate_cli.main([str(dot), "--ckpt", str(SHIPPED), "--resize"]) == 1
    err = capsys.readouterr().err
    assert str(dot) in err and "1x1" in err and "at least 8x8" in err
    assert not (tmp_path / "separated" / "dot.gray.png").exists()


def test_an_unreadable_file_is_skipped_and_the_others_written(exported, capsys):
    folder = exported / "mix"
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    gray_in = folder / "gray_input.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8), "L").save(gray_in)
    assert separate_cli.main([str(folder), "--ckpt", str(SHIPPED)]) == 1  # non-zero: one file failed
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and captured.err.count("skipped") == 1
    assert "gray input images are repeated" in captured.out
    assert len(list((folder / "separated").glob("*.gray.png"))) == 7


def test_outputs_never_overwrite_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "a.gray.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(SystemExit, match="a.gray.png would replace an input: choose another --out"):
        separate_cli.main([str(folder), "--ckpt", str(SHIPPED), "--out", str(folder), "--overwrite"])
    assert {p: p.read_bytes() for p in folder.iterdir()} == before  # nothing replaced, nothing added


def test_mix_makes_the_training_mean_image(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    color = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    Image.fromarray(color, "RGB").save(tmp_path / "c.png")
    assert mix_cli.main([str(tmp_path / "g.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "m.png")]) == 0
    from mixsep.data.datamodule import to_float_batch
    from mixsep.data.sources import resize_mnist

    expected, _, _ = to_float_batch(
        resize_mnist(torch.from_numpy(gray)[None]), torch.from_numpy(color).permute(2, 0, 1)[None]
    )
    made = torch.from_numpy(pixels(tmp_path / "m.png")).permute(2, 0, 1).float()
    assert (made - expected[0]).abs().max() <= 0.5 / 255 + 1e-6  # the training mix, rounded to 8 bits
    with pytest.raises(SystemExit):  # never overwrites an input
        mix_cli.main([str(tmp_path / "g.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "g.png")])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), gray)


def test_exported_test_pairs_are_the_data_modules_fixed_pairs(exported, tiny_root, tmp_path):
    from mixsep.data.datamodule import MixDataModule

    dm = MixDataModule(root=str(tiny_root), cache_dir=str(tmp_path / "cache"), test_pairs=6, val_holdout=8)
    dm.setup("test")
    mix, gray, color = dm.fixed_batch("test", 6)
    for i in range(6):
        name = f"{i:05d}.png"
        assert np.allclose(pixels(exported / "gray" / name), gray[i].permute(1, 2, 0).double().numpy(), atol=1e-6)
        assert np.allclose(pixels(exported / "color" / name), color[i].permute(1, 2, 0).double().numpy(), atol=1e-6)
        assert (
            np.abs(pixels(exported / "mix" / name) - mix[i].permute(1, 2, 0).double().numpy()).max() <= 0.5 / 255 + 1e-6
        )


@requires_real_data
def test_separate_on_real_exported_pairs_scores_like_evaluate(tmp_path, capfd, monkeypatch):
    from tests.helpers import PROJECT_ROOT, run_here

    monkeypatch.chdir(PROJECT_ROOT)
    result = run_here(["python", "benchmarks/separate_vs_evaluate.py", "--pairs", "200"], capfd)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: float(line.split()[-1]) for line in result.stdout.splitlines() if line.startswith("test/")}
    assert set(rows) == {"test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim"}
    assert abs(rows["test/mnist_psnr"]) < 0.05 and abs(rows["test/cifar_psnr"]) < 0.15  # 8-bit rounding only
