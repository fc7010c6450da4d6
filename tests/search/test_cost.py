"""Cost measurement: a stable median latency with N runs and W warm-up runs honoured, params and
GFLOPs of built models, the size Ultralytics really uses, and constraint violations."""

from __future__ import annotations

import pytest

from hpo.search.cost import build_model, measure_latency, model_costs, trained_imgsz, violation
from hpo.spec import Bound


def test_latency_median_is_stable_and_honours_runs_and_warmup() -> None:
    import torch

    calls = {"n": 0}
    medians = []
    for _ in range(2):
        module = build_model("yolov5n-p6.yaml", nc=2)
        module.register_forward_pre_hook(lambda m, x: calls.__setitem__("n", calls["n"] + 1))
        before = torch.get_num_threads()
        lat = measure_latency(module, 64, device="cpu", runs=7, warmup=3, threads=1)
        assert lat.runs == 7 and lat.warmup == 3 and len(lat.times_ms) == 7
        assert lat.device == "cpu" and lat.dtype == "float32" and lat.threads == 1
        assert torch.get_num_threads() == before  # restored
        assert min(lat.times_ms) <= lat.median_ms <= max(lat.times_ms)
        medians.append(lat.median_ms)
    assert calls["n"] == 2 * (7 + 3)  # every warm-up and timed run is one forward pass, nothing more
    assert 0 < medians[0] and max(medians) / min(medians) < 10, medians  # generous: 2 cores shared by others
    print(f"yolov5n-p6 at 64 px, CPU, 1 thread: median {medians} ms")


def test_params_and_gflops_of_built_models() -> None:
    small, big = build_model("yolov5n-p6.yaml", nc=2), build_model("yolov5s6.yaml", nc=2)
    assert trained_imgsz(small, 96) == 128 and trained_imgsz(small, 64) == 64  # P6: stride 64
    a, b = model_costs(small, 64), model_costs(big, 64)
    assert 3e6 < a["params"] < 5e6 < 1e7 < b["params"]
    assert 0 < a["gflops"] < b["gflops"]
    assert model_costs(small, 128)["gflops"] == pytest.approx(4 * a["gflops"], rel=0.05)


def test_violation_is_relative_and_signed() -> None:
    assert violation(120.0, Bound(max=100)) == pytest.approx(0.2)
    assert violation(80.0, Bound(max=100)) == pytest.approx(-0.2)
    assert violation(0.3, Bound(min=0.5)) == pytest.approx(0.4)
    assert violation(5.0, Bound(min=1, max=4)) == pytest.approx(0.25)
    assert violation(None, Bound(max=1)) == 0.0  # not measured yet: nothing held against the trial
