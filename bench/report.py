"""results.json -> results.md: machine, versions, method, then every benchmark with its targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

MET = {True: "✅ met", False: "❌ not met", None: "– n/a"}


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = results["versions"]
    quick = results.get("quick")
    lines = ["# hpo benchmarks", ""]
    if quick:
        lines += ["> **Quick mode** (`--quick`): smoke-test sizes, one repeat, figures not comparable to "
                  "the targets. Run `make bench` for the real measurements.", ""]
    lines += [
        f"Measured {results['finished']} by `{results['command']}` in {results['seconds'] / 60:.1f} min "
        "(sections run separately say so below). These are measurements, not tests: nothing asserts "
        "a time, and a figure that misses its target is reported as such.",
        "",
        "**How to read the figures.** Each figure is the *median* of repeated runs followed by "
        "*[min–max]*; a single run shows its value alone. Each *ratio* is hpo over its baseline, "
        "taken per repeat between two runs of the same repeat (back to back with alternating order, "
        "or side by side), then summarised the same way: machine noise moves both sides of a ratio.",
        "",
        "## Machine and versions",
        "",
    ]
    lines += markdown_table(["", ""], [
        ["CPU", f"{m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable)"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["GPU", m["gpu"]],
        ["OS / Python", f"{m['os']} / Python {m['python']}"],
        ["load average at start / end", f"{results.get('load_start')} / {results.get('load_end')}"],
        ["hpo", f"{v.get('hpo')} (commit {v.get('hpo_commit', '?')})"],
        ["Optuna / Ultralytics / torch", f"{v.get('optuna')} / {v.get('ultralytics')} / {v.get('torch')}"],
        ["SQLAlchemy / psycopg / NumPy", f"{v.get('sqlalchemy')} / {v.get('psycopg')} / {v.get('numpy')}"],
        ["SQLite / PostgreSQL server", f"{v.get('sqlite')} / {v.get('postgresql')}"],
    ])
    lines += ["", "## Targets", ""]
    rows = []
    for sec in results["sections"].values():
        for t in sec.get("targets", []):
            rows.append([sec["title"].split(" ", 1)[0].rstrip("."), t["target"], t["measured"], MET[t["met"]],
                         t.get("note", "")])
        if sec.get("error"):
            rows.append([sec["title"].split(" ", 1)[0].rstrip("."), sec["title"], "benchmark failed",
                         MET[None], sec["error"][:200]])
    lines += markdown_table(["#", "target", "measured (median [min–max])", "verdict", "note"], rows) if rows else \
        ["(no targets measured)"]
    for sec in results["sections"].values():
        lines += ["", f"## {sec['title']}", ""]
        meta = f"Run {sec['started']}, {sec['seconds'] / 60:.1f} min" + (
            f", load average {sec['load_before']} → {sec.get('load_after')}." if sec.get("load_before") else ".")
        if sec.get("run_id") and sec.get("run_id") != results.get("run_id"):
            meta += " (Measured in an earlier `--only` run than the rest of this file.)"
        lines += [meta, ""]
        if sec.get("error"):
            lines += [f"**Failed:** `{sec['error']}`", ""]
        if sec.get("setup"):
            lines += ["How it is measured:", ""] + [f"- {s}" for s in sec["setup"]] + [""]
        for table in sec.get("tables", []):
            if table.get("title"):
                lines += [f"**{table['title']}**", ""]
            lines += markdown_table(table["columns"], table["rows"]) + [""]
        for fig in sec.get("figures", []):
            lines += [f"![{sec['title']}]({fig})", ""]
        if sec.get("targets"):
            lines += ["Targets:", ""]
            lines += [f"- {t['target']}: {t['measured']} — **{MET[t['met']]}**"
                      + (f" ({t['note']})" if t.get("note") else "") for t in sec["targets"]]
            lines += [""]
        if sec.get("notes"):
            lines += ["Notes:", ""] + [f"- {n}" for n in sec["notes"]] + [""]
    lines += ["## Reproduce", "",
              "```sh",
              "make bench                                   # everything (several hours on 2 CPU cores)",
              "make bench BENCH_ARGS='--only overhead,scaling'  # a subset; other sections are kept",
              "make bench BENCH_ARGS='--quick'              # smoke run, a few minutes, written to bench/.work/",
              "```", "",
              "Raw numbers of every repeat: `bench/results.json`.", ""]
    return "\n".join(lines)


def store_section(section: dict[str, Any], path: Path | None = None) -> Path:
    """Put one section measured on its own (``--into-results``, a lent GPU's) into results.json, re-render results.md.

    The one writer for sections that do not come from a ``python -m bench`` run: the section replaces
    its namesake, the others stay, in the suite's order (imported sections last).
    """
    import json

    from bench.__main__ import ORDER, IMPORTED
    from bench.common import REPO, write_json

    path = path or REPO / "bench" / "results.json"
    report = json.loads(path.read_text())
    sections = {**report["sections"], section["name"]: section}
    report["sections"] = {name: sections[name] for name in ORDER + IMPORTED if name in sections}
    write_json(path, report)
    path.with_suffix(".md").write_text(render(report))
    return path


def import_run(name: str, title: str, *, started: str, seconds: float, module: str,
               fill: Callable[[Any], None], notes: list[str] | None = None) -> Path:
    """A run of ``python -m MODULE`` made away from ``make bench`` (``--into-results``) as section ``name``:
    ``fill(section)`` adds its setup, tables and targets; a note says how it was run; then :func:`store_section`."""
    from bench.common import say
    from bench.context import Section

    sec = Section(name=name, title=title, started=started, seconds=seconds)
    fill(sec)
    sec.notes.append(f"Run by `python -m {module}` ({seconds / 60:.0f} min), imported with `--into-results`.")
    sec.notes.extend(notes or [])
    path = store_section(sec.to_dict())
    say(f"section {title!r} written into {path} and results.md")
    return path
