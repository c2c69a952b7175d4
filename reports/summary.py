"""torchsummary-style table of a genome, with receptive field and MAC columns (formatting only)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from budgets import BYTES_PER_VALUE, Analysis, Limits, Verdict
from search.console import make_console  # re-exported: the one console of the CLI

__all__ = ["NARROW", "make_console", "render_summary", "shape_text", "summary_table"]


NARROW = 100  # columns: below this the table drops its vertical rules and shortens its headers, cutting no token


def shape_text(shape) -> str:
    """A shape in the one notation of the table: ``CxHxW`` (``10`` for a vector)."""
    return "x".join(str(v) for v in shape)


def summary_table(analysis: Analysis, bytes_per_value: int = 1, precision: str = "int8", width: int = 200) -> Table:
    """One row per layer: index, token, output shape, params, RF, MACs, activation bytes; totals in the footer.

    Below ``NARROW`` columns the headers are shorter and there are no vertical rules, so that the layer tokens, which
    never wrap, fit 80 columns."""
    from rich import box

    narrow = width < NARROW
    table = Table(title=analysis.genome.to_string(), title_justify="left", show_footer=True,
                  box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow)
    table.add_column("#", justify="right")
    table.add_column("Layer" if narrow else "Layer (type)", footer="Total", no_wrap=True)
    table.add_column("Shape" if narrow else "Output Shape", footer=shape_text(analysis.output_shape), no_wrap=True)
    table.add_column("Params" if narrow else "Param #", justify="right", footer=f"{analysis.params:,}", no_wrap=True)
    table.add_column("RF", justify="right", footer=str(analysis.receptive_field), no_wrap=True)
    table.add_column("MACs", justify="right", footer=f"{analysis.macs:,}", no_wrap=True)
    table.add_column("act. B" if narrow else f"Act. B ({precision})", justify="right", no_wrap=True,
                     footer=f"{analysis.peak_activation * bytes_per_value:,}" + ("" if narrow else " peak"))
    table.add_row("", "input", shape_text(analysis.input_shape), "0", "1", "0", "")
    for row in analysis.layers:
        table.add_row(str(row.index), row.token, shape_text(row.output_shape), f"{row.params:,}",
                      str(row.receptive_field), f"{row.macs:,}", f"{row.activation * bytes_per_value:,}")
    return table


def render_summary(analysis: Analysis, verdict: Verdict, limits: Limits, console: Console | None = None) -> None:
    """Print the table, the totals and the verdict against ``limits``."""
    console = console or make_console()
    console.print(summary_table(analysis, BYTES_PER_VALUE[limits.precision], limits.precision, console.width))
    int8 = limits.precision == "int8"
    totals = [f"Trainable params: {analysis.params:,}", f"Receptive field: {analysis.receptive_field}",
              f"MACs: {analysis.macs:,}", f"RAM: {verdict.ram:,} B" + (" (arena)" if int8 else ""),
              f"Flash: {verdict.flash:,} B ({'.tflite, int8' if int8 else limits.precision})",
              f"hash: {analysis.genome.hash}"]
    if console.width < NARROW:  # two lines, no figure cut from its unit
        console.print("   ".join(totals[:3]), no_wrap=True, overflow="ellipsis")
        console.print("   ".join(totals[3:]), no_wrap=True, overflow="ellipsis")
    else:
        console.print("   ".join(totals))
    if int8:
        from budgets.tflm import MEASURED_MARGIN, int8_problems

        low, high = MEASURED_MARGIN["arena"], MEASURED_MARGIN["flatbuffer"]
        console.print("RAM and flash (int8): TFLM's tensor arena and the .tflite file, estimated from above")
        console.print(f"(TFLM measured {low[0]:.0%}-{low[1]:.0%} / {high[0]:.0%}-{high[1]:.0%} of them); activations "
                      f"{analysis.peak_activation:,} B, weights {analysis.stored_params:,} B"
                      + (" (each application of a shared block stores its own)"
                         if analysis.stored_params != analysis.params else ""), no_wrap=True, overflow="ellipsis")
        for problem in int8_problems(analysis.genome):
            console.print(f"[yellow]int8: {problem}[/]")
    console.print(f"Limits: {limits.describe(analysis.genome)}")
    console.print(f"[bold green]{verdict}[/]" if verdict.ok else f"[bold red]{verdict}[/]")
