"""Lightning callbacks that mixsep adds to Lightning's own."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that keeps its best-checkpoint record when a run resumes into another
    folder (``ckpt_path=<old run>/checkpoints/last.ckpt``): best score and best path carry over, so
    "best" still means best of the whole run and ``test_ckpt=best`` tests the true best.

    Lightning restores that record only when the checkpoint folder is unchanged. Files of the earlier
    folder are never deleted (Lightning removes only checkpoints inside its own folder).
    """

    @property
    def state_key(self) -> str:  # the same key as ModelCheckpoint: checkpoints of either restore into both
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            return
        kept = {path: score for path, score in (state_dict.get("best_k_models") or {}).items() if os.path.isfile(path)}
        if state_dict.get("best_model_path") and os.path.isfile(state_dict["best_model_path"]):
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = kept
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "") if kept else ""
            self.kth_value = state_dict.get("kth_value", self.kth_value)
        else:  # the earlier best file is gone: start the record afresh rather than point at nothing
            self.best_model_path = ""
