"""The ``hpo`` application: registers the commands and turns :class:`~hpo.errors.HpoError` into one
line on stderr with exit status 2."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer

from hpo.cli import data, final, noise, study
from hpo.errors import HpoError

app = typer.Typer(
    name="hpo",
    help="Hyperparameter optimisation for YOLO object detection, built on Optuna.\n\n"
    "Typical flow: `hpo data synth` or `hpo data prepare` -> `hpo noise --study NAME` (once per problem) -> "
    "`hpo launch --study NAME` -> `hpo status` -> `hpo export`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        import hpo

        def installed(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        print(f"hpo {hpo.__version__} (optuna {installed('optuna')}, ultralytics {installed('ultralytics')})")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", help="print the versions and exit",
                                                   callback=_print_version, is_eager=True)] = False) -> None:
    pass


app.add_typer(data.app, name="data")
for command in (noise.noise, study.launch, study.worker, study.status, final.export, final.retrain, final.dashboard,
                final.report):
    app.command()(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hpo`` console script."""
    import optuna

    from hpo.cli.console import widen_help_when_piped

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # quiet by default: our own output says what matters
    widen_help_when_piped()
    argv = sys.argv[1:] if argv is None else argv
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
            _drop_hidden_suggestions(exc)
            exc.show()
            for hint in _yolo_style_hints(argv):
                print(f"hpo: hint: {hint}", file=sys.stderr)
            return exc.exit_code
        if type(exc).__name__ == "Abort":
            print("hpo: aborted", file=sys.stderr)
            return 130
        raise
    return result if isinstance(result, int) else 0


_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.*)$")


def _yolo_style_hints(argv: list[str]) -> list[str]:
    """``hpo launch study=demo`` is how ``yolo`` takes arguments; hpo wants ``--study demo``."""
    hints = []
    for token in argv:
        if token == "--":
            break
        match = _KEY_VALUE.match(token)
        if match:
            key, value = match.groups()
            hints.append(f"use --{key.replace('_', '-')} {value} (options are --name value, not yolo's name=value)")
    return hints


def _drop_hidden_suggestions(exc: Any) -> None:
    """"Did you mean --trainer?" must not point users at hidden options meant for tests."""
    possibilities = getattr(exc, "possibilities", None)
    command = getattr(getattr(exc, "ctx", None), "command", None)
    if not possibilities or command is None:
        return
    hidden = {name for param in command.params if getattr(param, "hidden", False)
              for name in (*param.opts, *param.secondary_opts)}
    exc.possibilities = [p for p in possibilities if p not in hidden]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
