"""``hydra_app`` imports a job's ``extensions`` before its task runs, on Hydra's pass-through path too (the task
called with a composed config); each multirun job's own: tests/user_paths/test_extensions.py's sweep."""

from __future__ import annotations

import sys

import pytest

from mixsep.training.command_line import hydra_app


def test_the_task_runs_with_its_configs_extensions_imported(compose, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "marker_ext.py").write_text("MARK = 1\n")
    monkeypatch.delitem(sys.modules, "marker_ext", raising=False)  # imported by this test only, removed after
    seen = []

    @hydra_app("config")
    def task(cfg):
        seen.append("marker_ext" in sys.modules)
        return 1.0

    assert task(compose("config", ["extensions=[./marker_ext.py]"], tmp_path / "run")) == 1.0
    assert seen == [True]
    monkeypatch.delitem(sys.modules, "marker_ext")


def test_a_missing_extension_is_one_line_before_the_task(compose, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    called = []
    task = hydra_app("evaluate")(called.append)
    with pytest.raises(SystemExit, match=r"^mixsep: .*missing_ext\.py, but there is no file"):
        task(compose("evaluate", ["extensions=[./missing_ext.py]"], tmp_path / "run"))
    assert called == []
