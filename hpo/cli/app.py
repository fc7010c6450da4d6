"""The ``hpo`` application: registers the commands and turns :class:`~hpo.errors.HpoError` into one
line on stderr with exit status 2."""

from __future__ import annotations

import sys

import typer

from hpo.cli import data, final, study
from hpo.errors import HpoError

app = typer.Typer(
    name="hpo",
    help="Hyperparameter optimisation for YOLO object detection, built on Optuna.\n\n"
    "Typical flow: `hpo data synth` or `hpo data prepare` -> `hpo launch --study NAME` -> "
    "`hpo status` -> `hpo export`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
for command in (study.launch, study.worker, study.status, final.export, final.retrain, final.dashboard,
                final.report):
    app.command()(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script."""
    import optuna

    from hpo.cli.console import widen_help_when_piped

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # quiet by default: our own output says what matters
    widen_help_when_piped()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="hpo")
    except HpoError as exc:
        print(f"hpo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        # Usage errors of typer's (vendored) click: they know how to show themselves.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if type(exc).__name__ == "Abort":
            print("hpo: aborted", file=sys.stderr)
            return 130
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
