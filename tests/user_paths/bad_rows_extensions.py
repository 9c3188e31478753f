"""Bad-input rows (read by tests/user_paths/test_bad_input.py): a user's own extension, source or score that
cannot work, and a model file whose precision is a config template. Each ends in one ``mixsep:`` line before
anything trains or is scored. The extension files are written into the row's folder, which is the current one."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.helpers import PROJECT_ROOT

RUN, EVALUATE = ["python", "-m", "mixsep.run"], ["python", "-m", "mixsep.evaluate"]
NAN = "torch.full((len(pred),), float('nan'))"
SHIPPED = PROJECT_ROOT / "results" / "best_cpu" / "model.ckpt"

SOURCE = """from mixsep.data.sources import Source, register_source


@register_source
class {cls}(Source):
    kind = {kind!r}
    names = {names!r}
"""

SCORE = """import torch
from mixsep.models.metrics import Score, register_score

register_score(Score({name!r}, lambda pred, target: {body}))
"""


def _file(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return name


def _source(folder: Path, name: str, kind: str, names: tuple) -> str:
    return _file(folder, f"{name}.py", SOURCE.format(cls=name.title().replace("_", ""), kind=kind, names=names))


def _score(folder: Path, name: str, body: str) -> str:
    return _file(folder, f"{name}.py", SCORE.format(name=name, body=body))


def checkpoint_with_precision(folder: Path, precision: str) -> Path:
    """The shipped checkpoint, its recorded precision replaced (a file someone sent)."""
    ckpt = torch.load(SHIPPED, weights_only=True)
    ckpt["mixsep_precision"] = precision
    path = folder / "sent.ckpt"
    torch.save(ckpt, path)
    return path


ROWS = [
    ("run-extension-file-missing", lambda t, r: RUN + ["extensions=[my_net.py]"], "but there is no file"),
    (
        "run-extension-path-without-py",
        lambda t, r: RUN + [f"extensions=[./{_file(t, 'my_net.py', 'x = 1').removesuffix('.py')}]"],
        "which is not a Python file: name the file itself: ./my_net.py",
    ),
    ("run-extension-unknown", lambda t, r: RUN + ["extensions=[nowhere_ext]"], "neither a file nowhere_ext.py in"),
    ("run-extensions-a-word", lambda t, r: RUN + ["extensions=nowhere_word"], "names nowhere_word, which is neither"),
    (
        "run-source-kind-grey",
        lambda t, r: RUN + [f"extensions=[./{_source(t, 'grey_src', 'grey', ('greyish',))}]"],
        "kind must be 'gray' or 'color', not 'grey'",
    ),
    (
        "run-source-duplicate-name",
        lambda t, r: RUN + [f"extensions=[{_source(t, 'dup_src', 'gray', ('mnist',))}]"],
        "a gray source named mnist is already declared",
    ),
    (
        "run-source-names-a-string",
        lambda t, r: RUN + [f"extensions=[{_source(t, 'word_src', 'gray', 'letters')}]"],
        "names must be a tuple of the options it serves",
    ),
    (
        "run-score-one-number-per-batch",
        lambda t, r: RUN + [f"extensions=[{_score(t, 'batch_mae', '(pred - target).abs().mean()')}]"],
        "score batch_mae gives one number for the whole batch",
    ),
    (
        "run-score-python-float",
        lambda t, r: RUN + [f"extensions=[{_score(t, 'float_mae', 'float((pred - target).abs().mean())')}]"],
        "score float_mae gives a float (",
    ),
    (
        "run-score-per-pixel",
        lambda t, r: RUN + [f"extensions=[{_score(t, 'pixel_mae', '(pred - target).abs()')}]"],
        "score pixel_mae gives a tensor of shape (4, 3, 32, 32) (a per-pixel result)",
    ),
    (
        "run-score-nan",
        lambda t, r: RUN + [f"extensions=[{_score(t, 'nan_mae', NAN)}]"],
        "score nan_mae gives values that are not finite",
    ),
    (
        "evaluate-precision-env-template",
        lambda t, r: EVALUATE + [f"ckpt_path={checkpoint_with_precision(t, '${oc.env:HOME}')}"],
        "records the precision '${oc.env:HOME}', which is not one of Lightning's",
    ),
    (
        "evaluate-precision-missing-node",
        lambda t, r: EVALUATE + [f"ckpt_path={checkpoint_with_precision(t, '${nope.x}')}"],
        "records the precision '${nope.x}'",
    ),
    (
        "evaluate-source-kind-grey",
        lambda t, r: EVALUATE + [f"ckpt_path={SHIPPED}", f"extensions=[{_source(t, 'grey_eval', 'grey', ('g',))}]"],
        "kind must be 'gray' or 'color', not 'grey'",
    ),
    (
        "evaluate-score-per-pixel",
        lambda t, r: EVALUATE + [f"ckpt_path={SHIPPED}", f"extensions=[./{_score(t, 'pix_eval', 'pred - target')}]"],
        "score pix_eval gives a tensor of shape (4, 3, 32, 32)",
    ),
    (
        "evaluate-extension-missing",
        lambda t, r: EVALUATE + [f"ckpt_path={SHIPPED}", "extensions=[./nothing_here.py]"],
        "the config's extensions=[...] names ./nothing_here.py, but there is no file",
    ),
]
