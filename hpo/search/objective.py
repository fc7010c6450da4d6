"""Objective metrics, computed the same way for trials, retrains and exports."""

from __future__ import annotations

import math
from typing import Any

# Ultralytics' metric keys (detection, suffix "(B)" for boxes) -> our names.
ULTRALYTICS_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50-95": "metrics/mAP50-95(B)",
}
METRIC_NAMES = ("precision", "recall", "map50", "map75", "map50-95", "fitness")


def yolov5_fitness(map50: float, map50_95: float) -> float:
    """YOLOv5's fitness: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (Ultralytics' own is mAP50-95 alone)."""
    return 0.1 * map50 + 0.9 * map50_95


def metrics_from_trainer(trainer: Any) -> dict[str, float]:
    """Every metric we record, read from an Ultralytics trainer right after validation."""
    raw = trainer.metrics or {}
    metrics = {name: float(raw.get(key, float("nan"))) for name, key in ULTRALYTICS_KEYS.items()}
    box = getattr(getattr(getattr(trainer, "validator", None), "metrics", None), "box", None)
    metrics["map75"] = float(box.map75) if box is not None else float("nan")
    metrics["fitness"] = yolov5_fitness(metrics["map50"], metrics["map50-95"])
    for key, value in raw.items():  # validation losses, useful on the dashboard
        if key.startswith("val/"):
            metrics[key.replace("/", "_")] = float(value)
    return metrics


def objective_value(metrics: dict[str, float], metric: str) -> float:
    value = metrics[metric]
    if not math.isfinite(value):
        raise ValueError(f"objective {metric} is {value}")
    return value
