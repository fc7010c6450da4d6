"""Study files with several objectives, constraints, latency settings and a searched architecture."""

from __future__ import annotations

import copy

import pytest
import yaml

from hpo.errors import HpoError
from hpo.spec import load_spec, parse_spec

from conftest import DEMO, REPO


def _multi(**extra) -> dict:
    d = copy.deepcopy(DEMO)
    d.pop("objective")
    d.pop("pruner")
    d["objectives"] = [{"metric": "fitness", "direction": "maximize"},
                       {"metric": "latency_ms", "direction": "minimize"}]
    d["constraints"] = {"weights_mb": {"max": 100}, "latency_ms": {"max": 30}}
    d.update(extra)
    return d


def test_single_objective_is_a_one_element_list() -> None:
    spec = parse_spec(copy.deepcopy(DEMO))
    assert [o.metric for o in spec.objectives] == ["fitness"] and not spec.multi_objective
    assert spec.objective == spec.objectives[0]
    assert parse_spec(spec.to_json()) == spec  # the stored form loads back unchanged


def test_stored_spec_of_an_old_study_loads() -> None:
    old = parse_spec(copy.deepcopy(DEMO)).to_json()
    for key in ("objectives", "constraints", "latency"):  # written before these fields existed
        old.pop(key)
    spec = parse_spec(old)
    assert spec.objectives[0].metric == "fitness" and spec.constraints == {}


def test_multi_objective_spec() -> None:
    spec = parse_spec(_multi())
    assert spec.multi_objective and spec.directions == ["maximize", "minimize"]
    assert spec.pruner == "none"  # a multi-objective study is not pruned (the default follows)
    assert spec.cost_metrics() == ["latency_ms", "weights_mb"]
    assert spec.constraints["weights_mb"].max == 100 and spec.latency.device == "cpu"
    assert parse_spec(spec.to_json()) == spec


def test_deploy_study_loads() -> None:
    spec = load_spec(REPO / "studies" / "deploy.yaml")
    assert spec.multi_objective and spec.model is None
    assert spec.model_choices() == ["yolov5n-p6.yaml", "yolov5s6.yaml"]
    assert spec.constraints["weights_mb"].max == 100
    args = spec.training_args({"model": "yolov5s6.yaml", "imgsz": 96, "lr0": 0.01, "momentum": 0.9})
    assert args["model"] == "yolov5s6.yaml" and args["imgsz"] == 96


CASES = [
    (lambda d: d["objectives"][1].update(metric="fps"), "objectives.1.metric: Input should be"),
    (lambda d: d["objectives"][1].pop("direction"), "objectives.1.direction: required field is missing"),
    (lambda d: d["objectives"].append({"metric": "fitness", "direction": "maximize"}),
     "objectives.2.metric: 'fitness' is already an objective"),
    (lambda d: d["constraints"].update(fps={"max": 3}), "constraints.fps: is not a measured metric"),
    (lambda d: d["constraints"].update(params={}), "constraints.params: give min, max or both"),
    (lambda d: d["constraints"].update(params={"min": 5, "max": 1}), "constraints.params: min 5.0 is above max 1.0"),
    (lambda d: d.update(pruner="hyperband"), "pruner: 'hyperband' cannot prune a multi-objective study"),
    (lambda d: d.update(sampler="cmaes"), "sampler: 'cmaes' cannot optimise several objectives"),
    (lambda d: d["objectives"].reverse(), "objectives.0.metric: the first (primary) objective must be an accuracy"),
    (lambda d: d.update(latency={"device": "gpu"}), "latency.device: Input should be"),
    (lambda d: d.update(latency={"runs": 0}), "latency.runs: Input should be greater than 0"),
    (lambda d: d.update(objective={"metric": "map75"}), "objective: give either objective (one) or objectives"),
    (lambda d: d["search_space"].update(model={"type": "float", "low": 1, "high": 2}),
     "search_space.model: must be {type: categorical"),
    (lambda d: d["search_space"].update(model={"type": "categorical", "choices": ["a.yaml", "b.yaml"]}),
     "model: is also in search_space"),
    (lambda d: d.update(weights={"yolov9.yaml": "x.pt"}), "weights.yolov9.yaml: is not a model of this study"),
]


@pytest.mark.parametrize("change,message", CASES, ids=[m.split(":")[0] for _, m in CASES])
def test_bad_objectives_are_one_line_errors(tmp_path, change, message) -> None:
    data = _multi()
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HpoError) as err:
        load_spec(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text, text


def test_constrained_single_objective_refuses_cmaes() -> None:
    d = copy.deepcopy(DEMO)
    d.update(constraints={"params": {"max": 1e6}}, sampler="cmaes")
    with pytest.raises(HpoError, match="sampler: 'cmaes' cannot honour constraints"):
        parse_spec(d)
