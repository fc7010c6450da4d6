"""The split report of ``hpo data prepare``: one dict, written as JSON and as Markdown.

The JSON is the machine-readable record (the HPO core and benchmarks read it); the Markdown is the
same content for people, with the per-class-per-bucket table in the form the seed project published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GENERATOR = "hpo data prepare"
SPLITS = ("train", "valid", "mini", "full")
_LIST_LIMIT = 50  # rows per problem list in the Markdown (the JSON lists everything)


@dataclass
class PrepareReport:
    """What :func:`hpo.data.prepare.prepare` did: split counts, and every skipped or fixed file."""

    raw: Path
    out: Path
    options: dict
    #: Stratification columns of the published table (class + box-count bucket).
    columns: list[str]
    #: split -> {"images", "boxes", "buckets": {column: images}, "classes": {name: {images, boxes}}}
    splits: dict[str, dict]
    folds: list[dict]
    #: split -> {bin: images} for the ``stratify_extra`` labels; empty without them.
    extra: dict[str, dict[str, int]] = field(default_factory=dict)
    #: ``{"file", "reason"}`` per file left out.
    skipped: list[dict] = field(default_factory=list)
    #: {"boxes": n, "files": [{"file", "boxes"}]}: boxes clipped to the image.
    clipped: dict = field(default_factory=lambda: {"boxes": 0, "files": []})
    #: {"boxes": n, "files": [...]}: zero-area boxes dropped.
    dropped: dict = field(default_factory=lambda: {"boxes": 0, "files": []})
    duplicates: list[str] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    #: Images whose bytes go on after the EOI marker: readable, kept.
    trailing_data: list[str] = field(default_factory=list)
    #: How images got into OUT: hardlink / symlink / copy / extracted (from a zip).
    links: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        """Skipped files plus clipped and dropped boxes plus duplicates: what ``--strict`` refuses."""
        return (len(self.skipped) + self.clipped["boxes"] + self.dropped["boxes"]
                + len(self.duplicates))

    def to_dict(self) -> dict:
        """The JSON form (no timings: re-running gives a byte-identical file)."""
        return {
            "generator": GENERATOR,
            "raw": str(self.raw),
            "out": str(self.out),
            "options": self.options,
            "columns": self.columns,
            "splits": self.splits,
            "folds": self.folds,
            "extra": self.extra,
            "skipped": self.skipped,
            "clipped": self.clipped,
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "unrecognised": self.unrecognised,
            "trailing_data": self.trailing_data,
            "links": self.links,
        }

    def table(self) -> list[list[str]]:
        """Header + one row per split: images per class/bucket column and total."""
        rows = [[""] + self.columns + ["total"]]
        for name in SPLITS:
            s = self.splits[name]
            rows.append([name] + [str(s["buckets"][c]) for c in self.columns] + [str(s["images"])])
        return rows

    def markdown(self) -> str:
        o = self.options
        extra = " + ".join(["class", "box-count bucket"] + list(o["stratify_extra"]))
        lines = [
            "# Split report",
            "",
            f"Written by `{GENERATOR}` from `{self.raw}`.",
            "",
            f"Multilabel stratified {o['folds']}-fold split (iterative-stratification, shuffle, seed "
            f"{o['seed']}) on {extra}. Validation = fold {o['valid_fold']}; train = the other folds; "
            f"mini = folds {'+'.join(map(str, o['mini_folds']))} (validated on fold "
            f"{o['valid_fold']}); full = all images (validated on fold {o['valid_fold']}).",
            "",
            "## Images per class and box-count bucket",
            "",
        ]
        lines += _md_table(self.table())
        lines += ["", "## Boxes per class", ""]
        rows = [["", "pig images", "pig boxes", "cow images", "cow boxes"]]
        for name in SPLITS:
            c = self.splits[name]["classes"]
            rows.append([name, *(str(c[a][k]) for a in ("pig", "cow") for k in ("images", "boxes"))])
        lines += _md_table(rows)
        lines += ["", "## Folds", ""]
        rows = [["fold"] + self.columns + ["total"]]
        rows += [[str(k)] + [str(f["buckets"][c]) for c in self.columns] + [str(f["images"])]
                 for k, f in enumerate(self.folds)]
        lines += _md_table(rows)
        if self.extra:
            bins = list(next(iter(self.extra.values())))
            lines += ["", "## Images per extra stratification bin (median box of each image)", ""]
            lines += _md_table([[""] + bins] + [[name] + [str(self.extra[name][b]) for b in bins]
                                               for name in SPLITS])
        lines += ["", "## Data problems", ""]
        lines.append(f"- skipped files: {len(self.skipped)}")
        lines.append(f"- boxes clipped to the image: {self.clipped['boxes']} "
                     f"(in {len(self.clipped['files'])} images)")
        lines.append(f"- zero-area boxes dropped: {self.dropped['boxes']} "
                     f"(in {len(self.dropped['files'])} images)")
        lines.append(f"- duplicate files ignored: {len(self.duplicates)}")
        lines.append(f"- unrecognised jpg/json names ignored: {len(self.unrecognised)}")
        lines.append(f"- images with data after the EOI marker (kept): {len(self.trailing_data)}")
        if self.skipped:
            lines += ["", "### Skipped", ""]
            lines += _md_table([["file", "reason"]] + [[s["file"], s["reason"]]
                                                       for s in self.skipped[:_LIST_LIMIT]])
            lines += _more(len(self.skipped))
        for title, part in (("Clipped", self.clipped), ("Dropped", self.dropped)):
            if part["files"]:
                lines += ["", f"### {title}", ""]
                lines += _md_table([["file", "boxes"]] + [[f["file"], str(f["boxes"])]
                                                         for f in part["files"][:_LIST_LIMIT]])
                lines += _more(len(part["files"]))
        for title, names in (("Duplicates", self.duplicates), ("Unrecognised", self.unrecognised),
                             ("Data after EOI", self.trailing_data)):
            if names:
                lines += ["", f"### {title}", ""] + [f"- `{n}`" for n in names[:_LIST_LIMIT]]
                lines += _more(len(names))
        links = ", ".join(f"{v} {k}" for k, v in sorted(self.links.items()))
        lines += ["", "## Files", "", f"Images in `images/full`: {links or 'none'}.", ""]
        return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [row(rows[0]), "|" + "---|" * len(rows[0])] + [row(r) for r in rows[1:]]


def _more(n: int) -> list[str]:
    return ["", f"... and {n - _LIST_LIMIT} more (see split_report.json)."] if n > _LIST_LIMIT else []
