"""Budget limits and the verdict of a genome against them."""

from __future__ import annotations

from dataclasses import dataclass, field

from blocks.genome import Genome
from budgets.costs import totals

__all__ = ["Limits", "Verdict", "check", "parse_min_rf"]


@dataclass(frozen=True)
class Limits:
    """Hard limits; ``None`` means no limit. ``min_rf="auto"`` means the input size (max of H, W)."""

    max_params: int | None = None
    min_rf: int | str | None = None
    max_macs: int | None = None

    def required_rf(self, genome: Genome) -> int | None:
        if self.min_rf == "auto":
            return max(genome.input.height, genome.input.width)
        return self.min_rf

    def describe(self, genome: Genome | None = None) -> str:
        """E.g. ``params <= 8,000, receptive field >= 28``; 'auto' is resolved when a genome is given."""
        parts = []
        if self.max_params is not None:
            parts.append(f"params <= {self.max_params:,}")
        if self.min_rf is not None:
            rf = self.required_rf(genome) if genome is not None else self.min_rf
            parts.append(f"receptive field >= {rf}")
        if self.max_macs is not None:
            parts.append(f"MACs <= {self.max_macs:,}")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class Verdict:
    """Whether a genome fits, with every violated limit as a readable reason."""

    params: int
    macs: int
    receptive_field: int
    violations: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        return "OK: within budget" if self.ok else "REJECTED: " + "; ".join(self.violations)


def check(genome: Genome, limits: Limits) -> Verdict:
    """Analytic check, no model built; raises ``GenomeError`` if the genome itself is malformed."""
    params, macs, rf = totals(genome)
    violations = []
    if limits.max_params is not None and params > limits.max_params:
        violations.append(f"params {params:,} > budget {limits.max_params:,}")
    required = limits.required_rf(genome)
    if required is not None and rf < required:
        violations.append(f"receptive field {rf} < required {required}")
    if limits.max_macs is not None and macs > limits.max_macs:
        violations.append(f"MACs {macs:,} > limit {limits.max_macs:,}")
    return Verdict(params, macs, rf, tuple(violations))


def parse_min_rf(text: str | None) -> int | str | None:
    """``--min-rf`` value: a positive integer or ``auto``; raises ValueError otherwise."""
    if text is None:
        return None
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"--min-rf must be a positive integer or 'auto', got {text!r}")
