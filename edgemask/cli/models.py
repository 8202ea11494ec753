"""``edgemask models``: the architectures the registry knows, with size and cost."""

from __future__ import annotations

import typer

from edgemask.cli._common import console, run_cli


def models(
    size: int = typer.Option(64, help="Input side in pixels used to count FLOPs."),
    num_classes: int = typer.Option(3, help="Number of output classes."),
) -> None:
    """List architectures with their parameters and FLOPs per image."""
    from rich.table import Table

    with run_cli():
        from edgemask.models import count_flops, count_parameters, create_model, get_model_spec, list_models

        table = Table(title=f"Architectures (input {size}×{size}, {num_classes} classes)")
        for col in ("name", "family", "params", "MFLOPs", "description"):
            table.add_column(col, justify="right" if col in ("params", "MFLOPs") else "left")
        for name in list_models():
            spec = get_model_spec(name)
            net = create_model(name, num_classes=num_classes, input_size=size)
            table.add_row(
                name, spec.family, f"{count_parameters(net):,}", f"{count_flops(net, size) / 1e6:.1f}", spec.description
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
