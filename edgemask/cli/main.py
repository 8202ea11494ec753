"""Root Typer app. Each command lives in its own module with ``register(app)``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="edgemask",
    help=(
        "Face-mask detection for edge cameras, and how stable the deployed model is.\n\n"
        "Typical flow: data synth → train → export → stability → run. "
        "'edgemask demo' runs the whole flow offline on synthetic data."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Order here is the order of commands in --help.
_COMMAND_MODULES = [
    "demo",
    "data",
    "models",
    "train",
    "detector",
    "export",
    "compare",
    "stability",
    "run",
    "devices",
    "engine",
    "doctor",
    "device",
    "fleet",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"edgemask.cli.{_name}").register(app)


def _print_version(value: bool) -> None:
    # Runs while the options are parsed, so it works without a command
    # (a check in the group callback would come after "Missing command").
    if value:
        from edgemask import __version__

        typer.echo(f"edgemask {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
        expose_value=True,
    ),
) -> None:
    """Face-mask detection for edge cameras."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # python -m edgemask.cli.main (what a systemd unit may run)
    main()
