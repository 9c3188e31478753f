"""The model card of a bundle (its README.md): front matter as model hubs read it, what the model separates and how
well (with 95 % bootstrap intervals), how it was trained, and its limits; every number from the run's records."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from mixsep.models.metrics import SOURCES, decimals, heading, score_of
from mixsep.models.saved import SavedModel
from mixsep.record.scores import SCORES_FILE, read_scores
from mixsep.record.status import BadRecord, load_record, read_json
from mixsep.report.stats import bootstrap_mean
from mixsep.report.tables import markdown_table, score_names

USAGE = """
```bash
mixsep separate mean.png --model THIS_FOLDER   # the installed command: nothing in the folder it starts in runs
```

```python
from mixsep import load_separator
gray, colour = load_separator("THIS_FOLDER")(mix)   # mix: (B, 3, 32, 32) in [0, 1]
```

"""


def find_metrics(model_path: Path, given: Path | None = None) -> tuple[Path | None, str]:
    """The metrics.json that scored this model file (``given``, else the one beside it or above ``checkpoints/``
    that names it; a shipped ``model.ckpt`` is its folder's), and why it was taken or why none was."""
    if given is not None:
        return given, f"{given} (given with --metrics)"
    model_path = model_path.resolve()
    for folder in (model_path.parent, model_path.parent.parent):
        candidate = folder / "metrics.json"
        if not candidate.is_file():
            continue
        try:
            tested = load_record(candidate, {}).get("checkpoint")
        except BadRecord:
            continue
        tested = tested if isinstance(tested, str) else ""
        shipped = model_path.name == "model.ckpt" and folder == model_path.parent
        if shipped or Path(tested).name == model_path.name:
            return candidate, f"{candidate.name} beside it"
        return None, f"{candidate} scored {Path(tested).name or 'another file'}, not {model_path.name}"
    return None, "no metrics.json beside it"


def model_card(
    saved: SavedModel,
    name: str,
    parameters: int,
    metrics_path: Path | None,
    metrics_note: str,
    files: dict,
    training: dict | None = None,
) -> str:
    """The card's text. ``metrics_path``: the run's metrics.json, its scores.npz beside it (None: the card says
    the model is unscored); ``files``: the bundle's file names and sizes in bytes; ``training``: the metrics.json
    of the run that trained the weights, where the scores come from a later evaluation."""
    gray, _, colour = saved.sources.partition("+")
    gray, colour = gray or "mnist", colour or "cifar10"
    metrics = read_json(metrics_path) if metrics_path else {}
    names = score_names([metrics])  # the declared scores this model was scored with
    scored = [k for k in (f"test/{s}_{m}" for s in SOURCES for m in names) if number(metrics.get(k)) is not None]
    tags = ["mixsep", "image-source-separation", gray, colour, "safetensors"] + ["onnx"] * ("model.onnx" in files)
    front = {"library_name": "mixsep", "pipeline_tag": "image-to-image", "tags": tags}
    front.update(datasets=[gray, colour], metrics=names)
    if scored:
        dataset = {"name": f"{gray} + {colour} mean images (mixsep's fixed test pairs)", "type": saved.sources}
        dataset.update(split="test", args={"pairs": number(metrics.get("test_pairs"))})
        result = {"task": {"type": "image-to-image", "name": "single-image source separation"}, "dataset": dataset}
        result["metrics"] = [{"type": k.rsplit("_", 1)[1], "name": k, "value": metrics[k]} for k in scored]
        front["model-index"] = [{"name": name, "results": [result]}]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {name}", ""]
    lines += [
        f"A mixsep separator ({saved.architecture}, {parameters:,} parameters). Give it the pixel-wise mean of a "
        f"{gray} image (gray, resized to 32x32, repeated to 3 channels) and a 32x32 RGB {colour} image; it gives back "
        "both: a batch (B, 3, 32, 32) of float32 in [0, 1] in, the gray and the colour source (B, 3, 32, 32) in "
        "[0, 1] out. It sees only the mean image.",
        *USAGE.splitlines(),
    ]
    if "model.onnx" in files:
        lines += [
            "With ONNX Runtime alone: `onnxruntime.InferenceSession('model.onnx').run(None, {'mix': mix})` "
            "(any batch size; the structure head and the clamp to [0, 1] are in the graph). `config.json` records "
            "each file's SHA-256 (`files`): compare `sha256sum model.onnx` with it first; `mixsep separate --onnx` "
            "does, and tries the graph on a probe batch.",
            "",
        ]
    lines += ["## Test scores", ""]
    if scored:
        lines += [*score_table(saved, metrics, metrics_path, gray, colour), f"Scores from {metrics_note}.", ""]
    else:
        fix = "Score it on the fixed test pairs with `mixsep evaluate ckpt_path=THIS_FOLDER`."
        lines += [f"Not scored: {metrics_note}. {fix}", ""]
    lines += ["## Training", ""] + training_lines(saved, training or metrics) + ["", "## Files", ""]
    lines += [f"- `{file}`: {size_text(size)}" for file, size in files.items()]
    lines += ["", "## Limits", ""] + limits(saved, gray, colour)
    return "\n".join(lines) + "\n"


def score_table(saved: SavedModel, metrics: dict, metrics_path: Path, gray: str, colour: str) -> list[str]:
    """The test scores per source, each with its 95 % bootstrap interval over the pairs (from scores.npz)."""
    names = score_names([metrics])
    scores = read_scores(metrics_path.parent, SCORES_FILE) or {}
    ci = {k: bootstrap_mean(v) for k, v in scores.items() if k != "pair"}
    pairs = number(metrics.get("test_pairs"))
    rows = []
    for source, label in (("mnist", gray), ("cifar", colour)):
        row = [label]
        for m in names:
            value, digits, low_high = number(metrics.get(f"test/{source}_{m}")), decimals(m), ci.get(f"{source}_{m}")
            row.append("-" if value is None else f"{value:.{digits}f}")
            row.append(f"[{low_high[1]:.{digits}f}, {low_high[2]:.{digits}f}]" if low_high else "-")
        rows.append(row)
    head = ["source", *(h for m in names for h in (with_unit(m), "95 % interval"))]
    return [
        f"On mixsep's fixed test pairs ({'?' if pairs is None else f'{pairs:,.0f}'} pairs of the {gray} and {colour} "
        f"test sets, the same for every run), scored at {metrics.get('precision', saved.precision)} on predictions "
        "clamped to [0, 1] (PSNR: the mean of per-image PSNR, data_range 1; SSIM: torchmetrics, data_range 1). "
        "Intervals: 95 % percentile bootstrap over the pairs (2,000 resamples)"
        + ("." if ci else "; not available: the run kept no per-pair scores (scores.npz)."),
        "",
        markdown_table(head, rows, "l" + "rl" * len(names)),
        "",
    ]


def number(value: object) -> float | int | None:
    """A finite number from a metrics.json someone may have edited, else None (shown as not recorded)."""
    plain = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if plain and math.isfinite(value) else None


def size_text(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def training_lines(saved: SavedModel, metrics: dict) -> list[str]:
    prov = metrics.get("provenance") if isinstance(metrics.get("provenance"), dict) else {}
    seconds, steps = number(metrics.get("train_seconds")), number(metrics.get("global_step"))
    duration = f"{seconds / 60:.1f} minutes" if seconds else "not recorded"
    if steps:
        duration += f", {steps:,.0f} steps"
    experiment = metrics.get("experiment") or saved.settings.get("name")
    command = f"`{prov['command']}`" if prov.get("command") else f"not recorded (the run's experiment: {experiment})"
    commit = prov.get("git_commit") or "not recorded by the run"
    if prov.get("git_dirty"):
        commit += " (with uncommitted changes)"
    return [
        f"- trained on: {saved.sources} (training images; the validation images are held out of them)",
        f"- training time: {duration}",
        f"- hardware: {metrics.get('hardware') or 'not recorded'}; precision {saved.precision}",
        f"- command: {command}",
        f"- commit: {commit}",
        f"- exported from `{saved.path.name}`",
    ]


def limits(saved: SavedModel, gray: str, colour: str) -> list[str]:
    return [
        f"- Trained and scored only on means of {gray} and {colour} images; other pictures are outside what it "
        "learnt, and its output for them is a guess.",
        "- 32x32 inputs only (`mixsep.separate --resize` resizes other sizes, which loses detail).",
        *[
            f"- Scored at {saved.precision}; separating in float32 (as mixsep.separate and ONNX do) gives nearly, "
            "not exactly, the same pictures."
        ][: saved.precision != "32-true"],
        "- The gray source is resized from 28x28 to 32x32, so its pixels are interpolated, not the original ones.",
    ]


def with_unit(name: str) -> str:
    """A score's heading with its unit: ``PSNR (dB)``."""
    score = score_of(name)
    return f"{heading(name)} ({score.unit})" if score and score.unit else heading(name)
