"""The models that travel with the package: ``DEFAULT_MODEL`` is the best shipped bundle on the validation pairs
(results/best_cpu_range is its run), what ``mixsep separate`` and ``load_separator()`` use when given no model."""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "best_cpu_range"
