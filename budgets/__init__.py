"""Pure, analytic budget math over genomes: shapes, params, receptive field, MACs, verdicts."""

from budgets.check import BYTES_PER_VALUE, Limits, Verdict, check, parse_min_rf
from budgets.costs import Analysis, LayerCost, Totals, analyze, totals

__all__ = ["BYTES_PER_VALUE", "Analysis", "LayerCost", "Limits", "Totals", "Verdict", "analyze", "check", "parse_min_rf",
           "totals"]
