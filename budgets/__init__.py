"""Pure, analytic budget math over genomes: shapes, params, receptive field, MACs, verdicts."""

from budgets.check import Limits, Verdict, check, parse_min_rf
from budgets.costs import Analysis, LayerCost, analyze, totals

__all__ = ["Analysis", "LayerCost", "Limits", "Verdict", "analyze", "check", "parse_min_rf", "totals"]
