"""YOLOv5 hyp files, both ways: a study may start from one, and hands its result back as one.

The two engines share most hyp names but not all meanings (Ultralytics 8.x against YOLOv5 v6/v7): YOLOv5-only keys
(``obj``, ``anchor_t``...) do not exist in Ultralytics, and ``box``/``cls``/``cls_pw`` are on another
scale there. Neither direction drops such a key silently: an import lists what it left out and why,
an export fills YOLOv5-only keys from the imported file (else YOLOv5's defaults) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo import hyps, yamlio
from hpo.errors import HpoError, shown

# Ultralytics training arguments that YOLOv5's train.py takes as command-line flags.
TRAIN_PY_FLAGS = {"epochs": "--epochs", "imgsz": "--img", "batch": "--batch-size", "optimizer": "--optimizer",
                  "cos_lr": "--cos-lr", "seed": "--seed", "label_smoothing": "--label-smoothing",
                  "patience": "--patience", "rect": "--rect", "single_cls": "--single-cls",
                  "multi_scale": "--multi-scale"}
_YOLOV5_OPTIMIZERS = ("SGD", "Adam", "AdamW")


@dataclass(frozen=True)
class Import:
    """What a YOLOv5 hyp file brings to an Ultralytics study, and what it cannot."""

    source: str
    imported: dict[str, Any]
    dropped: dict[str, str]  # key -> why it was left out
    original: dict[str, Any]  # the file as read, for a faithful export back to YOLOv5


def read_hyp_file(path: Path) -> dict[str, Any]:
    """A YOLOv5 hyp file as a mapping; ``ValueError`` with a one-line reason otherwise."""
    if not path.is_file():
        raise ValueError(f"YOLOv5 hyp file {path} not found")
    try:
        data = yamlio.load(path)
    except HpoError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} is not a YOLOv5 hyp file (expected `key: value` lines)")
    bad = [k for k, v in data.items() if not isinstance(k, str) or isinstance(v, (dict, list)) and k != "anchors"]
    if bad:
        raise ValueError(f"{path}: {shown(bad[0])} is not a hyp (expected `key: number` lines)")
    return data


def import_hyps(path: Path) -> Import:
    """Split a YOLOv5 hyp file into Ultralytics base hyps and the keys that cannot be carried over."""
    original = read_hyp_file(path)
    imported: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for key, value in original.items():
        if key in hyps.YOLOV5_ONLY:
            dropped[key] = hyps.YOLOV5_ONLY[key]
        elif key in hyps.RESCALED:
            dropped[key] = f"{hyps.RESCALED[key]}; Ultralytics' default kept"
        elif key in hyps.RESERVED_ARGS:
            dropped[key] = "set by hpo for every trial"
        elif not hyps.is_training_arg(key):
            dropped[key] = "neither a YOLOv5 hyp nor an Ultralytics training argument"
        else:
            imported[key] = value
    return Import(str(path), imported, dropped, original)


def to_yolov5(config: dict[str, Any], tuned: set[str], original: dict[str, Any] | None = None,
              ) -> tuple[dict[str, Any], list[str]]:
    """A complete YOLOv5 hyp mapping for an Ultralytics training config, and comment lines on it.

    Shared keys come from ``config``; rescaled and YOLOv5-only keys from ``original`` (the file the
    study imported, if any), else from YOLOv5's ``hyp.scratch-low.yaml`` defaults.
    """
    original = original or {}
    hyp: dict[str, Any] = {}
    from_study, from_import, from_defaults, not_carried = [], [], [], []
    for key, default in hyps.YOLOV5_DEFAULTS.items():
        if key in config and key not in hyps.RESCALED and key not in hyps.YOLOV5_ONLY:
            hyp[key] = config[key]
            from_study.append(f"{key}{' (tuned)' if key in tuned else ''}")
            continue
        if key in config and key in hyps.RESCALED:
            not_carried.append(f"{key}={_fmt(config[key])}{' (tuned)' if key in tuned else ''}")
        if key in original:
            hyp[key] = original[key]
            from_import.append(key)
        else:
            hyp[key] = default
            from_defaults.append(key)
    if "anchors" in original:
        hyp["anchors"] = original["anchors"]
        from_import.append("anchors")
    extra = [k for k in config if k not in hyps.YOLOV5_DEFAULTS and k not in ("model", "data", "pretrained")
             and k not in TRAIN_PY_FLAGS]
    flags = []
    for key, flag in TRAIN_PY_FLAGS.items():
        value = config.get(key)
        if value is None or value is False:
            continue
        if key == "optimizer" and value not in _YOLOV5_OPTIMIZERS:
            extra.append(key)
            continue
        flags.append(flag if value is True else f"{flag} {value}")
    notes = [f"from the study: {', '.join(from_study) or '-'}"]
    if from_import:
        notes.append(f"from the imported YOLOv5 file: {', '.join(from_import)}")
    if from_defaults:
        notes.append(f"YOLOv5 defaults (hyp.scratch-low.yaml): {', '.join(from_defaults)}")
    if not_carried:
        notes.append(f"not carried over, another scale in Ultralytics: {', '.join(not_carried)}")
    tuned_extra = [f"{k}={_fmt(config[k])}" for k in extra if k in tuned]
    fixed_extra = [f"{k}={_fmt(config[k])}" for k in extra if k not in tuned]
    if tuned_extra:
        notes.append(f"tuned, no YOLOv5 equivalent: {', '.join(tuned_extra)}")
    if fixed_extra:
        notes.append(f"study settings without a YOLOv5 equivalent: {', '.join(fixed_extra)}")
    notes.append(f"use: python train.py --hyp <this file> {' '.join(flags)}".rstrip())
    return hyp, notes


def render(header: list[str], config: dict[str, Any], tuned: set[str], original: dict[str, Any] | None = None) -> str:
    hyp, notes = to_yolov5(config, tuned, original)
    lines = [*header, *notes]
    body = "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in hyp.items())
    return "".join(f"# {line}\n" for line in lines) + body


def _fmt(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
