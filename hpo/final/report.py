"""``hpo report``: a static report of a study, readable offline: PNG plots and an ``index.html``.

Most plots are Optuna's own (``optuna.visualization.matplotlib``; plotly's PNG export would need
kaleido and a browser). Two are hpo's, in the form users of Ultralytics' tuner know: the objective
over trials and one scatter per hyp against the objective. Both show pruned trials at the value of
their last epoch (grey crosses): with a pruner most trials are pruned, and leaving them out hid the
GA's exploration. Intermediate values draw pruned trials dashed, ending in a cross. Plots that would
mislead on few trials say so: importances carry a caveat below :data:`MIN_TRIALS_IMPORTANCES`
complete trials, parallel coordinates are not drawn below :data:`MIN_TRIALS_PARALLEL`. For retrained
studies a mini-vs-full scatter shows whether the cheap ranking held on the full set.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs
from hpo.study import StudySettings, best_trial, pareto_front, progress


#: Below this many complete trials parameter importances are mostly noise: drawn, with a caveat.
MIN_TRIALS_IMPORTANCES = 20
#: Below this many complete trials parallel coordinates are a few crossing lines: not drawn.
MIN_TRIALS_PARALLEL = 8


@dataclass
class Plot:
    file: str
    title: str
    caption: str
    draw: Callable[[optuna.Study], Any]
    #: Why not to draw it for this study (None: draw).
    skip: Callable[[optuna.Study], str | None] | None = None
    #: What the reader must know about it for this study (None: nothing).
    caveat: Callable[[optuna.Study], str | None] | None = None


@dataclass
class Report:
    """What was written, and which plots could not be drawn (and why)."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    caveats: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


def _intermediate_values(study: optuna.Study) -> Any:
    """Optuna's intermediate-values plot, with pruned trials dashed and marked where they stopped."""
    from optuna.visualization.matplotlib import plot_intermediate_values

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_intermediate_values(study)
    pruned = {t.number: t.last_step for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))}
    for line in list(ax.get_lines()):
        label = str(line.get_label())
        number = int(label[5:]) if label.startswith("Trial") and label[5:].isdigit() else None
        if number in pruned:
            line.set_linestyle("--")
            line.set_label(f"Trial{number} (pruned at {pruned[number]})")
            xs, ys = line.get_xdata(), line.get_ydata()
            if len(xs):
                ax.plot([xs[-1]], [ys[-1]], marker="x", markersize=9, color=line.get_color(), linestyle="none")
    ax.set_title("Intermediate values (dashed, x: pruned)")
    ax.set_xlabel("Epoch")
    if len(ax.get_lines()) >= 2:
        handles = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("Trial")]
        ax.legend(handles=handles, bbox_to_anchor=(1.05, 1), loc="upper left", borderaxespad=0.0, fontsize=7)
    return ax


def _finished_points(study: optuna.Study) -> list[tuple[FrozenTrial, float, bool]]:
    """``(trial, value, pruned)``: complete trials at their value, pruned ones at their last epoch's."""
    points = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.state == TrialState.COMPLETE and t.value is not None:
            points.append((t, t.value, False))
        elif t.state == TrialState.PRUNED and t.last_step is not None:
            points.append((t, t.intermediate_values[t.last_step], True))
    if not points:
        raise ValueError("no finished trial with a value yet")
    return points


def _history(metric: str) -> Callable[[optuna.Study], Any]:
    """The objective over trials (Ultralytics' tune_fitness.png), pruned trials included and marked."""

    def draw(study: optuna.Study) -> Any:
        import matplotlib.pyplot as plt

        points = _finished_points(study)
        with plt.style.context("ggplot"):  # the look of Optuna's plots beside it
            fig, ax = plt.subplots(figsize=(8, 4.5), tight_layout=True)
        done = [(t.number, v) for t, v, pruned in points if not pruned]
        cut = [(t.number, v) for t, v, pruned in points if pruned]
        if done:
            ax.scatter(*zip(*done), s=32, color="#1f77b4", zorder=3, label="complete")
            pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
            best, xs, ys = None, [], []
            for number, value in sorted(done):
                best = value if best is None else pick(best, value)
                xs.append(number)
                ys.append(best)
            last = max(t.number for t, _, _ in points)
            ax.step([*xs, last], [*ys, ys[-1]], where="post", color="#d62728", zorder=2, label="best so far")
        if cut:
            ax.scatter(*zip(*cut), s=32, marker="x", color="#7f7f7f", zorder=3,
                       label="pruned (value at its last epoch)")
        ax.set_title(f"{metric} over trials ({len(done)} complete, {len(cut)} pruned)")
        ax.set_xlabel("Trial")
        ax.set_ylabel(metric)
        ax.legend(loc="best", fontsize=8)
        return ax

    return draw


def _scatter(metric: str) -> Callable[[optuna.Study], Any]:
    """One panel per hyp, objective against its value (Ultralytics' tune_scatter_plots.png)."""

    def draw(study: optuna.Study) -> Any:
        import matplotlib.pyplot as plt

        points = _finished_points(study)
        names = list(dict.fromkeys(n for t, _, _ in points for n in t.params))
        if not names:
            raise ValueError("the trials have no hyps")
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        with plt.style.context("ggplot"):
            fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False,
                                     tight_layout=True)
        best = best_trial(study)
        for ax, name in zip(axes.flat, names):
            have = [(t, v, pruned) for t, v, pruned in points if name in t.params]
            dist = have[0][0].distributions[name]
            choices = list(getattr(dist, "choices", ()))

            def x_of(t: FrozenTrial) -> Any:
                return choices.index(t.params[name]) if choices else t.params[name]

            for pruned, style in ((True, {"marker": "x", "color": "#7f7f7f", "label": "pruned (last epoch)"}),
                                  (False, {"color": "#1f77b4", "label": "complete"})):
                xy = [(x_of(t), v) for t, v, p in have if p == pruned]
                if xy:
                    ax.scatter(*zip(*xy), s=26, zorder=3, **style)
            if best is not None and name in best.params:
                ax.scatter([x_of(best)], [best.value], s=160, marker="*", color="#d62728", zorder=4,
                           label=f"best (trial {best.number})")
            if choices:
                ax.set_xticks(range(len(choices)), [str(c) for c in choices])
            elif getattr(dist, "log", False):
                from matplotlib.ticker import FuncFormatter

                ax.set_xscale("log")  # plain numbers (0.005), not crowded 5x10^-3 minor labels
                for axis_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
                    axis_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.tick_params(axis="x", which="both", labelrotation=30, labelsize=8)
            ax.set_xlabel(name)
            ax.set_ylabel(metric)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=7, loc="best")
        fig.suptitle(f"{metric} against each hyp")
        return axes

    return draw


def _fewer_than(minimum: int, say: str) -> Callable[[optuna.Study], str | None]:
    """A check that says ``say`` (formatted with ``n`` and ``minimum``) below ``minimum`` complete trials."""

    def check(study: optuna.Study) -> str | None:
        n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return None if n >= minimum else say.format(n=n, minimum=minimum)

    return check


def _mini_vs_full(record: dict[str, Any]) -> Callable[[optuna.Study], Any]:
    def draw(study: optuna.Study) -> Any:
        import matplotlib.pyplot as plt

        ok = [m for m in record["models"] if m.get("full_value") is not None and not m.get("error")]
        if not ok:
            raise ValueError("no retrained model succeeded")
        fig, ax = plt.subplots(figsize=(6, 4.5), tight_layout=True)
        xs, ys = [m["mini_value"] for m in ok], [m["full_value"] for m in ok]
        ax.scatter(xs, ys, s=40, color="#1f77b4")
        for m in ok:
            mark = " (winner)" if m["trial"] == record.get("winner") else ""
            ax.annotate(f"#{m['trial']}{mark}", (m["mini_value"], m["full_value"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        rho = record.get("spearman")
        ax.set_title(f"mini set vs full set ({record['metric']})"
                     + (f": Spearman {rho:+.2f}" if rho is not None else ""))
        ax.set_xlabel(f"search (mini set) {record['metric']}")
        ax.set_ylabel(f"retrained (full set, {record['epochs']} epochs) {record['metric']}")
        return ax

    return draw


def _pareto(spec: Any) -> Callable[[optuna.Study], Any]:
    """Accuracy (primary objective, y) against the first other objective (x, usually a cost): every
    complete trial, infeasible ones as red crosses, the Pareto front highlighted and joined."""

    def draw(study: optuna.Study) -> Any:
        import matplotlib.pyplot as plt

        y_obj, x_obj = spec.objectives[0], spec.objectives[1]
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
        if not done:
            raise ValueError("no complete trial yet")
        front = {t.number for t in pareto_front(study)}
        fig, ax = plt.subplots(figsize=(6.5, 4.8), tight_layout=True)
        groups = {
            "feasible": [t for t in done if t.user_attrs.get(attrs.FEASIBLE) is not False and t.number not in front],
            "infeasible": [t for t in done if t.user_attrs.get(attrs.FEASIBLE) is False],
            "Pareto front": sorted((t for t in done if t.number in front), key=lambda t: t.values[1]),
        }
        style = {"feasible": dict(color="#1f77b4", marker="o", s=30, alpha=0.7),
                 "infeasible": dict(color="#d62728", marker="x", s=40),
                 "Pareto front": dict(color="#ff7f0e", marker="o", s=70, edgecolors="black", zorder=3)}
        for label, trials in groups.items():
            if trials:
                ax.scatter([t.values[1] for t in trials], [t.values[0] for t in trials], label=f"{label} "
                           f"({len(trials)})", **style[label])
        line = groups["Pareto front"]
        if len(line) > 1:
            ax.plot([t.values[1] for t in line], [t.values[0] for t in line], color="#ff7f0e", drawstyle="steps-post"
                    if x_obj.direction == "minimize" else "default", zorder=2)
        for t in line:
            ax.annotate(f"#{t.number}", (t.values[1], t.values[0]), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
        ax.set_xlabel(f"{x_obj.metric} ({x_obj.direction})")
        ax.set_ylabel(f"{y_obj.metric} ({y_obj.direction})")
        ax.set_title(f"Pareto front: {y_obj.metric} against {x_obj.metric}")
        ax.legend(fontsize=8)
        return ax

    return draw


def _primary(draw: Callable[..., Any], spec: Any) -> Callable[[optuna.Study], Any]:
    """An Optuna plot of a multi-objective study, on its primary objective."""
    metric = spec.objectives[0].metric

    def primary(study: optuna.Study) -> Any:
        return draw(study, target=lambda t: t.values[0], target_name=metric)

    return primary


def plots(record: dict[str, Any] | None, spec: Any = None, metric: str = "objective") -> list[Plot]:
    from optuna.visualization import matplotlib as vis

    if spec is not None and spec.multi_objective:
        chosen = [
            Plot("pareto_front.png", "Pareto front", f"{spec.objectives[0].metric} against "
                 f"{spec.objectives[1].metric}: every complete trial, infeasible ones crossed, the front highlighted",
                 _pareto(spec)),
            *(Plot(f, t, f"{c} (primary objective {spec.objectives[0].metric})", _primary(d, spec)) for f, t, c, d in (
                ("optimization_history.png", "Optimisation history", "every finished trial",
                 vis.plot_optimization_history),
                ("param_importances.png", "Parameter importances", "how much each hyp explains it",
                 vis.plot_param_importances),
                ("parallel_coordinate.png", "Parallel coordinates", "hyps of every complete trial",
                 vis.plot_parallel_coordinate),
                ("slice.png", "Slice", "against each hyp", vis.plot_slice))),
            Plot("timeline.png", "Timeline", "when each trial ran, and how it ended", vis.plot_timeline),
        ]
        if record:
            chosen.append(Plot("mini_vs_full.png", "Mini set vs full set", "the search's ranking against the "
                               "retrained models' (hpo retrain)", _mini_vs_full(record)))
        return chosen
    chosen = [
        Plot("optimization_history.png", "Objective over trials",
             f"{metric} of every finished trial (pruned ones at their last epoch's value, grey x), and the best "
             "so far", _history(metric)),
        Plot("param_importances.png", "Parameter importances", "how much each hyp explains the objective "
             "(Optuna's default evaluator, complete trials)", vis.plot_param_importances,
             caveat=_fewer_than(MIN_TRIALS_IMPORTANCES, "from only {n} complete trial(s) (fewer than {minimum}): "
                                "importances this early are mostly noise; read them as a hint, not a ranking")),
        Plot("intermediate_values.png", "Intermediate values", "objective after every epoch; pruned trials dashed",
             _intermediate_values),
        Plot("parallel_coordinate.png", "Parallel coordinates", "hyps of every complete trial, coloured by objective",
             vis.plot_parallel_coordinate,
             skip=_fewer_than(MIN_TRIALS_PARALLEL, "only {n} complete trial(s): parallel coordinates need {minimum} "
                              "to be readable (slice.png shows each hyp)")),
        Plot("slice.png", "Hyps against objective", f"{metric} against each hyp (pruned trials at their last "
             "epoch's value, grey x; the best trial starred)", _scatter(metric)),
        Plot("timeline.png", "Timeline", "when each trial ran, and how it ended", vis.plot_timeline),
    ]
    if record:
        chosen.append(Plot("mini_vs_full.png", "Mini set vs full set", "the search's ranking against the "
                           "retrained models' (hpo retrain)", _mini_vs_full(record)))
    return chosen


class ReportWriter:
    """Writes a study's report into ``out_dir`` (created; files in it are replaced)."""

    def __init__(self, study: optuna.Study, settings: StudySettings, out_dir: Path) -> None:
        self.study = study
        self.settings = settings
        self.out_dir = Path(out_dir)
        from hpo.final.record import final_record

        self.final = final_record(study)

    def write(self) -> Report:
        import matplotlib

        matplotlib.use("Agg")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = Report(self.out_dir)
        for plot in self.plots():
            why_not = plot.skip(self.study) if plot.skip else None
            if why_not:
                report.skipped[plot.file] = why_not
                (self.out_dir / plot.file).unlink(missing_ok=True)  # not an older report's picture
                continue
            try:
                self._draw(plot)
                report.files.append(self.out_dir / plot.file)
                caveat = plot.caveat(self.study) if plot.caveat else None
                if caveat:
                    report.caveats[plot.file] = caveat
            except Exception as exc:  # noqa: BLE001 - a plot Optuna cannot draw yet is noted, not fatal
                report.skipped[plot.file] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        csv = self.out_dir / "trials.csv"
        self.study.trials_dataframe().to_csv(csv, index=False)
        report.files.append(csv)
        report.index.write_text(self._html(report), encoding="utf-8")
        report.files.append(report.index)
        return report

    def plots(self) -> list[Plot]:
        return plots(self.final, self.settings.spec, self.settings.spec.objective.metric)

    def _draw(self, plot: Plot) -> None:
        import matplotlib.pyplot as plt
        import numpy as np

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning of the matplotlib backend
            result = plot.draw(self.study)
        first = np.atleast_1d(result).flat[0]
        figure = first.figure
        try:
            figure.savefig(self.out_dir / plot.file, dpi=110, bbox_inches="tight")
        finally:
            plt.close(figure)

    # --- index.html ------------------------------------------------------------------------------

    def _html(self, report: Report) -> str:
        s, spec = self.study, self.settings.spec
        state = progress(s)
        best = best_trial(s)
        parts = [f"<h1>Study {_e(s.study_name)}</h1>"]
        if spec.description:
            parts.append(f"<p>{_e(spec.description)}</p>")
        parts.append(_table(["sampler", "pruner", "objective", "budget", "complete", "pruned", "refused (infeasible)",
                             "failed", "model", "data"],
                            [[self.settings.sampler, self.settings.pruner,
                              ", ".join(f"{o.metric} ({o.direction})" for o in spec.objectives), self.settings.budget,
                              state.complete, state.pruned, state.infeasible, state.failed,
                              ", ".join(spec.model_choices()),
                              spec.data]]))
        if spec.constraints:
            parts.append("<p>Constraints: " + _e(", ".join(
                f"{n} " + " and ".join(x for x in (f">= {b.min:g}" if b.min is not None else "",
                                                    f"<= {b.max:g}" if b.max is not None else "") if x)
                for n, b in spec.constraints.items())) + "</p>")
        if spec.multi_objective:
            front = pareto_front(s)
            parts.append(f"<h2>Pareto front: {len(front)} trial(s)</h2>")
            parts.append(_table(["#", *(o.metric for o in spec.objectives), "params"],
                                [[t.number, *(_num(v) for v in t.values),
                                  ", ".join(f"{k}={_num(v)}" for k, v in t.params.items())] for t in front]))
        if best is not None:
            parts.append(f"<h2>Best trial: #{best.number}, {spec.objective.metric} {best.values[0]:.5f}</h2>")
            parts.append("<h3>Hyps</h3><pre>" + _e("\n".join(f"{k}: {v}" for k, v in best.params.items())) + "</pre>")
            metrics = {k: best.user_attrs.get(k) for k in ("precision", "recall", "map50", "map75", "map50-95",
                                                          "fitness")}
            parts.append(_table(list(metrics), [[_num(v) for v in metrics.values()]]))
        if spec.base_import is not None and spec.base_import.dropped:
            parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_e(w)}</li>" for w in
                                                          spec.base_import.warning_lines()) + "</ul>")
        if self.final:
            parts.append(self._final_html())
        parts.append("<h2>Plots</h2>")
        for plot in self.plots():
            if plot.file in report.skipped:
                parts.append(f"<p><b>{_e(plot.title)}</b>: not drawn ({_e(report.skipped[plot.file])})</p>")
            else:
                caveat = report.caveats.get(plot.file)
                note = f"<br><b>Caveat</b>: {_e(caveat)}" if caveat else ""
                parts.append(f"<figure><img src='{plot.file}' alt='{_e(plot.title)}'><figcaption><b>{_e(plot.title)}"
                             f"</b>: {_e(plot.caption)}{note}</figcaption></figure>")
        parts.append("<h2>Trials</h2>")
        names = list(spec.search_space)
        costs = spec.cost_metrics()
        rows = []
        for t in s.get_trials(deepcopy=False):
            note = t.user_attrs.get(attrs.FAIL_REASON) or t.user_attrs.get(attrs.PRUNED_REASON) or ""
            feasible = {True: "yes", False: "INFEASIBLE", None: "-"}[t.user_attrs.get(attrs.FEASIBLE)]
            note = "; ".join(filter(None, [*(t.user_attrs.get(attrs.VIOLATIONS) or []), note]))
            rows.append([t.number, t.state.name, ", ".join(_num(v) for v in t.values) if t.values else "-",
                         *[_num(t.params.get(n)) for n in names],
                         t.user_attrs.get(attrs.EPOCHS, t.last_step), _num(t.user_attrs.get("map75")),
                         *[_num(t.user_attrs.get(c)) for c in costs], *([feasible] if spec.constraints else []),
                         t.user_attrs.get(attrs.TRAIN_SECONDS), note])
        parts.append(_table(["#", "state", "value" + ("s" if spec.multi_objective else ""), *names, "epochs", "mAP75",
                             *costs, *(["feasible"] if spec.constraints else []), "seconds", "note"], rows))
        parts.append("<p>Also here: <a href='trials.csv'>trials.csv</a> (every trial, Optuna's dataframe). "
                     f"Written {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by hpo report.</p>")
        return _PAGE.format(title=_e(f"hpo report: {s.study_name}"), body="\n".join(parts))

    def _final_html(self) -> str:
        from hpo.final.record import summary_lines

        f = self.final or {}
        rows = []
        for m in f["models"]:
            mt = m.get("metrics") or {}
            rows.append([m["trial"], f"{_num(m['mini_value'])} ({m['mini_rank']})",
                         f"{_num(m.get('full_value'))} ({m.get('full_rank') or '-'})", _num(mt.get("map50")),
                         _num(mt.get("map75")), _num(mt.get("map50-95")),
                         f"{m['weight_bytes'] / 1e6:.1f} MB" if m.get("weight_bytes") else "-",
                         {True: "yes", False: "NO", None: "-"}[m.get("under_limit")],
                         m.get("wall_seconds"), m.get("error") or ("reused" if m.get("reused") else "")])
        head = (f"<h2>Final models (hpo retrain: {f['epochs']} epochs on {_e(f['data'])})</h2>"
                + "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in summary_lines(f)) + "</ul>")
        return head + _table(["trial", "mini (rank)", "full (rank)", "mAP50", "mAP75", "mAP50-95", "weights",
                              "under 100 MB", "seconds", "note"], rows)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
th{{background:#f3f3f3}}img{{max-width:100%}}figure{{margin:1.5em 0}}</style></head>
<body>
{body}
</body></html>
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.5g}"
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report_json(report: Report) -> dict[str, Any]:
    return {"dir": str(report.out_dir), "index": str(report.index), "files": [str(p) for p in report.files],
            "skipped": report.skipped, "caveats": report.caveats}

