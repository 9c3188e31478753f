"""A Lightning logger mixsep does not ship, as a user writes one in an extension module: it keeps all it receives
(parameters, metrics, pictures, finalize statuses, its run id) in ``<save_dir>/received.json``, which it rewrites at
every finalize. Its YAML (test_dashboards.py) names it by ``_target_`` and leaves ``run_id`` and ``name`` null."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class RecordingLogger(Logger):
    def __init__(self, save_dir: str, run_id: str | None = None, name: str | None = None) -> None:
        super().__init__()
        self._file = Path(save_dir) / "received.json"
        self._run_id = run_id or secrets.token_hex(8)  # as a tracking server gives a new run its id
        self.received: dict = {"run_id": self._run_id, "name": name}
        self.received |= {"params": [], "metrics": [], "pictures": [], "finalize": []}

    @property
    def name(self) -> str:
        return self.received["name"]

    @property
    def version(self) -> str:
        return self._run_id

    @rank_zero_only
    def log_hyperparams(self, params, metrics: dict | None = None, step: int | None = None) -> None:
        self.received["params"].append({"params": dict(params), "metrics": metrics, "step": step})

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.received["metrics"].append({"metrics": dict(metrics), "step": step})

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self.received["pictures"].append({"key": key, "shape": list(images[0].shape), "step": step, **kwargs})

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.received["finalize"].append(status)
        self._file.write_text(json.dumps(self.received, default=str))
