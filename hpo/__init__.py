"""hpo: hyperparameter optimisation for YOLO object detection, built on Optuna.

The library API (:mod:`hpo.api`) is importable from here: ``hpo.launch``, ``hpo.load``,
``hpo.export``, ``hpo.study_names``; it is loaded on first use so ``import hpo`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["launch", "load", "export", "study_names", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("launch", "load", "export", "study_names"):
        from hpo import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
