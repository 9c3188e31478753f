"""Export a trained model as a bundle to share: ``python -m mixsep.export RUN_OR_CKPT DIR [--onnx]``.

DIR gets the weights, config.json, a model card (README.md) and, with ``--onnx``, model.onnx (``models/bundle.py``);
``load_separator(DIR)``, ``mixsep.separate --model DIR`` and ``mixsep.evaluate ckpt_path=DIR`` give the checkpoint's
outputs from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from mixsep.errors import ArgumentParser, MixsepError, one_line_errors
from mixsep.extensions import load_extensions
from mixsep.files import check_outputs, write_text_atomically
from mixsep.models.bundle import CARD_FILE, CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, read_json

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
CHECK_MIXES = 64  # random mean images the written bundle is checked on against the model it came from


def export_bundle(
    model: Path, folder: Path, onnx=False, metrics: Path | None = None, overwrite=False, training: Path | None = None
) -> dict[str, int]:
    """Write the bundle of ``model`` (a checkpoint or a bundle) into ``folder``; its files and sizes."""
    from mixsep.models.bundle import bundle_config, write_bundle
    from mixsep.models.onnx_graph import open_onnx
    from mixsep.models.saved import read_model
    from mixsep.models.separator import load_separator
    from mixsep.record.provenance import code_version
    from mixsep.record.scores import SCORES_FILE, read_scores
    from mixsep.report.card import find_metrics, model_card

    missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None] if onnx else []
    if missing:
        raise MixsepError(f"--onnx needs {', '.join(missing)}: pip install 'mixsep[onnx]'")
    names = [WEIGHTS_FILE, CONFIG_FILE, CARD_FILE] + ([ONNX_FILE] if onnx else [])
    if folder.exists() and not folder.is_dir():
        raise MixsepError(f"{folder} is a file: give a folder for the bundle")
    taken = [Path(path).name for path in check_outputs([folder / name for name in names], [model], overwrite, "folder")]
    for flag, given in (("--metrics", metrics), ("--training", training)):
        if given is not None and not given.is_file():
            raise MixsepError(f"{flag} {given}: no such file (give a run's metrics.json)")
    model, metrics = tested_checkpoint(model, metrics)
    saved = read_model(model)
    separator = load_separator(model)
    metrics_path, note = find_metrics(model, metrics)
    if metrics_path is not None:  # its scores checked before any file is written (the card reads them last)
        read_scores(metrics_path.parent, SCORES_FILE)
    records = {path: read_record(path) for path in {p for p in (metrics_path, training) if p is not None}}
    trained = (records.get(training) or records.get(metrics_path) or {}).get("provenance")
    trained = trained if isinstance(trained, dict) else {}
    check = torch.rand(CHECK_MIXES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = separator(check)
    config = bundle_config(saved, trained, code_version())
    write_bundle(saved, separator.net, folder, config, (separator.ensemble or separator.net) if onnx else None)
    files = {name: (folder / name).stat().st_size for name in names if name != CARD_FILE}
    parameters = sum(p.numel() for p in separator.net.parameters())
    card = model_card(saved, folder.resolve().name, parameters, metrics_path, note, files, records.get(training))
    write_text_atomically(folder / CARD_FILE, card)
    files[CARD_FILE] = (folder / CARD_FILE).stat().st_size
    after = load_separator(folder)(check)
    if any(not torch.equal(a, b) for a, b in zip(before, after)):
        raise MixsepError(f"the bundle in {folder} does not give the outputs of {model}: please report this")
    if taken:
        print(f"mixsep.export: replaced {', '.join(taken)} in {folder} (--overwrite)")
    print(f"mixsep.export: {folder}: the bundle gives {model.name}'s outputs exactly ({CHECK_MIXES} random mixes)")
    if onnx:
        outputs = open_onnx(folder)(check.numpy())  # as separate --onnx opens it
        gap = max(float((torch.from_numpy(o) - e).abs().max()) for o, e in zip(outputs, before))
        print(f"mixsep.export: model.onnx under ONNX Runtime: largest difference {gap:.1e} from PyTorch")
    return files


def tested_checkpoint(model: Path, metrics: Path | None) -> tuple[Path, Path | None]:
    """A run folder stands for the checkpoint its metrics.json tested (and that file for its scores), taken only
    inside the run folder (no link leading out): export never publishes a model the user did not name."""
    record = model / "metrics.json"
    if not model.is_dir() or (model / CONFIG_FILE).is_file() or not record.is_file():
        return model, metrics
    tested = read_record(record).get("checkpoint") or ""
    if not isinstance(tested, str):
        raise MixsepError(f"{record}: its checkpoint is not a path; give the checkpoint itself")
    name = Path(tested).name
    run = model.resolve()
    for candidate in (model / "checkpoints" / name, model / name):
        if name not in ("", ".", "..") and candidate.is_file() and candidate.resolve().is_relative_to(run):
            return candidate, metrics or record
    outside = Path(tested).is_file() or any(p.is_file() for p in (model / "checkpoints" / name, model / name))
    if outside:
        raise MixsepError(
            f"{model}: the checkpoint its metrics.json tested ({tested[:200]}) is not inside the run folder: export "
            "takes a run's own checkpoints only; give the checkpoint itself (python -m mixsep.export CKPT DIR)"
        )
    raise MixsepError(
        f"{model}: the checkpoint its metrics.json tested ({tested[:200]}) is gone; give a checkpoint file"
    )


def read_record(path: Path) -> dict:
    record = read_json(path, "a run's metrics.json")
    if not isinstance(record, dict):
        raise MixsepError(f"{path} holds a {type(record).__name__}, not a run's metrics.json")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="mixsep export", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("model", type=Path, help="a run folder (its tested checkpoint), a checkpoint, or a bundle to export again")
    add("folder", type=Path, help="the bundle's folder (made if missing)")
    add("--onnx", action="store_true", help="also write model.onnx (ONNX Runtime alone)")
    add("--metrics", type=Path, help="the metrics.json that scored the model (default: found beside it)")
    add("--training", type=Path, help="the metrics.json of the run that trained it, where --metrics only scored it")
    add("--overwrite", action="store_true", help="replace the bundle files already in the folder")
    args = parser.parse_args(argv)
    from mixsep.report.card import size_text

    with one_line_errors(os_error=f"cannot write the bundle to {args.folder} ({{error}}): choose another folder"):
        load_extensions()  # MIXSEP_EXTENSIONS: a network of one's own that the model file names
        files = export_bundle(args.model, args.folder, args.onnx, args.metrics, args.overwrite, args.training)
    for name, size in files.items():
        print(f"  {args.folder / name}  {size_text(size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
