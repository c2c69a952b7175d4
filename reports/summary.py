"""torchsummary-style table of a genome, with receptive field and MAC columns (formatting only)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from budgets import BYTES_PER_VALUE, Analysis, Limits, Verdict
from search.console import make_console  # re-exported: the one console of the CLI

__all__ = ["make_console", "render_summary", "summary_table"]


def summary_table(analysis: Analysis, bytes_per_value: int = 1, precision: str = "int8") -> Table:
    """One row per layer: index, token, output shape, params, RF, MACs, activation bytes; totals in the footer."""
    table = Table(title=analysis.genome.to_string(), title_justify="left", show_footer=True)
    table.add_column("#", justify="right")
    table.add_column("Layer (type)", footer="Total")
    table.add_column("Output Shape", footer=str(list(analysis.output_shape)))
    table.add_column("Param #", justify="right", footer=f"{analysis.params:,}")
    table.add_column("RF", justify="right", footer=str(analysis.receptive_field))
    table.add_column("MACs", justify="right", footer=f"{analysis.macs:,}")
    table.add_column(f"Act. B ({precision})", justify="right",
                     footer=f"peak {analysis.peak_activation * bytes_per_value:,}")
    table.add_row("", "input", str(list(analysis.input_shape)), "0", "1", "0", "")
    for row in analysis.layers:
        table.add_row(str(row.index), row.token, str([-1, *row.output_shape]), f"{row.params:,}",
                      str(row.receptive_field), f"{row.macs:,}", f"{row.activation * bytes_per_value:,}")
    return table


def render_summary(analysis: Analysis, verdict: Verdict, limits: Limits, console: Console | None = None) -> None:
    """Print the table, the totals and the verdict against ``limits``."""
    console = console or make_console()
    console.print(summary_table(analysis, BYTES_PER_VALUE[limits.precision], limits.precision))
    console.print(f"Trainable params: {analysis.params:,}   Receptive field: {analysis.receptive_field}   "
                  f"MACs: {analysis.macs:,}   RAM: {verdict.ram:,} B   Flash: {verdict.flash:,} B "
                  f"({limits.precision})   hash: {analysis.genome.hash}")
    console.print(f"Limits: {limits.describe(analysis.genome)}")
    console.print(f"[bold green]{verdict}[/]" if verdict.ok else f"[bold red]{verdict}[/]")
