"""`hpo export` in both formats (any trial, the retrained winner) and YOLOv5 hyps as a study's base."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from hpo.errors import HpoError
from hpo.spec import load_spec, parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join

from conftest import hpo_cmd, tiny_spec_dict
from final_support import NAME, RETRAIN_EPOCHS, FinishedStudy, Retrained

# YOLOv5 v7.0 data/hyps/hyp.scratch-low.yaml, the keys its train.py reads (written out here on
# purpose, not taken from hpo.hyps).
YOLOV5_KEYS = ["lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr",
               "box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma", "hsv_h", "hsv_s",
               "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic",
               "mixup", "copy_paste"]

# The contest entry's final hyps (experiment_hyp_v1.yaml), as YOLOv5 wrote them.
EXPERIMENT_HYP_V1 = """# experiment_hyp_v1.yaml
lr0: 0.009
lrf: 0.08
momentum: 0.94
weight_decay: 0.001
warmup_epochs: 0.11
warmup_momentum: 0.77
warmup_bias_lr: 0.0004
box: 0.02
cls: 0.2
cls_pw: 0.95
obj: 0.2
obj_pw: 0.5
iou_t: 0.2
anchor_t: 4.0
fl_gamma: 0.0
hsv_h: 0.009
hsv_s: 0.1
hsv_v: 0.9
degrees: 0.0
translate: 0.1
scale: 0.5
shear: 0.0
perspective: 0.0
flipud: 0.0
fliplr: 0.5
mosaic: 1.0
mixup: 0.0
copy_paste: 0.0
"""


def _get_cfg(path: Path):
    from hpo.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.cfg import get_cfg

    return get_cfg(cfg=str(path))  # what `yolo train cfg=FILE` does first: rejects unknown keys and types


def test_export_final_loads_in_ultralytics(fin: FinishedStudy, done: Retrained, tmp_path: Path) -> None:
    out = tmp_path / "final.yaml"
    proc = fin.hpo("export", "--study", NAME, "--storage", fin.url, "--final", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    winner = next(m for m in done.record["models"] if m["trial"] == done.record["winner"])
    text = out.read_text()
    assert text.startswith(f"# hpo export: study {NAME}, final model: trial {winner['trial']} retrained on the "
                           "full set")
    assert "# metrics: precision=" in text and "map75=" in text
    cfg = _get_cfg(out)
    assert cfg.data == str(fin.full_data) and cfg.epochs == RETRAIN_EPOCHS and cfg.cos_lr is False  # the retrain's settings
    for key, value in winner["params"].items():
        assert getattr(cfg, key) == value
    assert cfg.imgsz == 128 and cfg.optimizer == "SGD"  # the study's fixed arguments

    proc = fin.hpo("export", "--study", NAME, "--storage", fin.url, "--final", "--trial", "1")
    assert proc.returncode == 2 and "either --trial or --final" in proc.stderr


def test_export_yolov5_has_exactly_yolov5s_keys(fin: FinishedStudy, done: Retrained, tmp_path: Path) -> None:
    study = fin.study()
    for args, trial in ((["--trial", "2"], study.trials[2]), ([], study.best_trial)):
        out = tmp_path / "hyp.yaml"
        proc = fin.hpo("export", "--study", NAME, "--storage", fin.url, "--format", "yolov5", "-o", str(out), *args)
        assert proc.returncode == 0, proc.stderr
        hyp = yaml.safe_load(out.read_text())
        assert list(hyp) == YOLOV5_KEYS  # complete, in YOLOv5's order, nothing else
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in hyp.values())
        for key, value in trial.params.items():
            assert hyp[key] == value
        assert hyp["warmup_epochs"] == 0  # a fixed study setting YOLOv5 shares
        assert (hyp["box"], hyp["obj"], hyp["anchor_t"]) == (0.05, 1.0, 4.0)  # YOLOv5 defaults
        comments = [line for line in out.read_text().splitlines() if line.startswith("#")]
        text = "\n".join(comments)
        assert f"trial {trial.number}" in comments[0]
        assert "from the study: lr0 (tuned), lrf (tuned), momentum (tuned), warmup_epochs" in text
        assert "study settings without a YOLOv5 equivalent: nbs=8, close_mosaic=0" in text
        assert ("use: python train.py --hyp <this file> --epochs 6 --img 128 --batch-size 8 --optimizer SGD "
                "--cos-lr") in text

    proc = fin.hpo("export", "--study", NAME, "--storage", fin.url, "--format", "yolov5", "--final", "-o", "-")
    assert proc.returncode == 0, proc.stderr
    assert list(yaml.safe_load(proc.stdout)) == YOLOV5_KEYS and "--cos-lr" not in proc.stdout  # linear LR
    proc = fin.hpo("export", "--study", NAME, "--storage", fin.url, "--format", "onnx")
    assert proc.returncode == 2 and "'onnx' is not one of 'ultralytics', 'yolov5'" in proc.stderr


def test_yolov5_hyp_file_as_base_round_trips(toy_data: Path, tmp_path: Path) -> None:
    """The seed's experiment_hyp_v1.yaml as a study's base: YOLOv5-only keys reported, kept for export."""
    (tmp_path / "hyps").mkdir()
    (tmp_path / "hyps" / "experiment_hyp_v1.yaml").write_text(EXPERIMENT_HYP_V1)
    raw = tiny_spec_dict(toy_data, name="v5base")
    raw["base"] = {"lrf": 0.1}  # the study's own base wins over the file
    raw["base_from"] = "experiment_hyp_v1.yaml"  # resolved next to the study file
    study_file = tmp_path / "hyps" / "v5base.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    spec = load_spec(study_file)
    imp = spec.base_import
    assert imp is not None and imp.source == str(tmp_path / "hyps" / "experiment_hyp_v1.yaml")
    assert set(imp.dropped) == {"box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma"}
    assert spec.base["lr0"] == 0.009 and spec.base["lrf"] == 0.1 and spec.base["hsv_s"] == 0.1
    assert "obj" not in spec.base and "box" not in spec.base
    assert spec.fixed_args()["warmup_momentum"] == 0.77 and spec.fixed_args()["warmup_epochs"] == 0  # train wins
    # `base: FILE` is the same thing; a stored spec never reads the file again.
    assert parse_spec({**raw, "base": str(tmp_path / "hyps" / "experiment_hyp_v1.yaml"), "base_from": None}
                      ).base_import.dropped == imp.dropped
    (tmp_path / "hyps" / "experiment_hyp_v1.yaml").unlink()
    assert parse_spec(spec.to_json()) == spec
    with pytest.raises(HpoError, match="base_from: YOLOv5 hyp file .* not found"):
        load_spec(study_file)

    url = f"sqlite:///{tmp_path / 'v5.db'}"
    create_or_join(open_storage(url), spec, sampler="random", pruner="none")
    study = optuna.load_study(study_name="v5base", storage=url)
    trial = study.ask({n: p.distribution() for n, p in spec.search_space.items()})
    study.tell(trial, 0.5)

    import subprocess

    status = subprocess.run(hpo_cmd("status", "--study", "v5base", "--storage", url), capture_output=True,
                            text=True, env={**__import__("os").environ, "COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    for key in ("obj=0.2 not imported", "anchor_t=4.0 not imported", "box=0.02 not imported"):
        assert key in status.stdout, status.stdout

    out = tmp_path / "v5.yaml"
    proc = subprocess.run(hpo_cmd("export", "--study", "v5base", "--storage", url, "--format", "yolov5", "-o",
                                  str(out)), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    hyp = yaml.safe_load(out.read_text())
    assert list(hyp) == YOLOV5_KEYS
    assert hyp["lr0"] == trial.params["lr0"] and hyp["hsv_s"] == 0.1 and hyp["warmup_bias_lr"] == 0.0004
    assert (hyp["obj"], hyp["box"], hyp["cls_pw"], hyp["anchor_t"]) == (0.2, 0.02, 0.95, 4.0)  # from the file
    assert "from the imported YOLOv5 file: box, cls, cls_pw, obj, obj_pw, iou_t, anchor_t, fl_gamma" in out.read_text()

    out = tmp_path / "ul.yaml"
    proc = subprocess.run(hpo_cmd("export", "--study", "v5base", "--storage", url, "-o", str(out)),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "not imported (no Ultralytics equivalent): box, cls, cls_pw, obj" in out.read_text()
    cfg = _get_cfg(out)
    assert cfg.hsv_s == 0.1 and cfg.warmup_momentum == 0.77
    assert not {"box", "obj", "anchor_t"} & set(vars(cfg))  # Ultralytics keeps its own box gain (7.5)


def test_base_from_values_outside_the_space_name_the_file(toy_data: Path, tmp_path: Path) -> None:
    (tmp_path / "h.yaml").write_text("lr0: 0.5\nobj: 1.0\n")
    raw = tiny_spec_dict(toy_data)
    raw.pop("base")
    raw["base_from"] = str(tmp_path / "h.yaml")
    with pytest.raises(HpoError, match=r"base.lr0: 0.5 lies outside the search space \(from base_from .*h.yaml\)"):
        parse_spec(raw)
    (tmp_path / "h.yaml").write_text("- not a mapping\n")
    with pytest.raises(HpoError, match="base_from: .* is not a YOLOv5 hyp file"):
        parse_spec(raw)
