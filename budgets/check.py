"""Budget limits and the verdict of a genome against them."""

from __future__ import annotations

from dataclasses import dataclass, field

from blocks.genome import Genome
from budgets.costs import Totals, totals
from budgets.tflm import arena_estimate, flatbuffer_estimate

__all__ = ["BYTES_PER_VALUE", "Limits", "Verdict", "check", "parse_min_rf"]

BYTES_PER_VALUE = {"int8": 1, "fp32": 4}


@dataclass(frozen=True)
class Limits:
    """Hard limits; ``None`` means no limit. ``min_rf="auto"`` means the input size (max of H, W).

    ``max_ram``: bytes of memory for one image at inference; ``max_flash``: bytes of the model file. At
    ``precision`` int8 (as deployed on a microcontroller) they are TensorFlow Lite Micro's tensor arena and the
    int8 flatbuffer, estimated from above (``budgets.tflm``); at fp32, the peak activations and the weights.
    """

    max_params: int | None = None
    min_rf: int | str | None = None
    max_macs: int | None = None
    max_ram: int | None = None
    max_flash: int | None = None
    precision: str = "int8"

    def __post_init__(self) -> None:
        if self.precision not in BYTES_PER_VALUE:
            raise ValueError(f"--precision must be one of {', '.join(BYTES_PER_VALUE)}, got {self.precision!r}")

    def ram_bytes(self, t: Totals) -> int:
        """int8: TFLite Micro's tensor arena (``budgets.tflm.arena_estimate``, an upper estimate fitted to
        measurements); fp32: the peak activations, 4 bytes each."""
        if self.precision == "int8":
            return arena_estimate(t.tflm_tensors, t.operators, t.channels)
        return t.peak_activation * BYTES_PER_VALUE[self.precision]

    def flash_bytes(self, t: Totals) -> int:
        """int8: the ``.tflite`` flatbuffer (``budgets.tflm.flatbuffer_estimate``); fp32: the weights, 4 bytes each.
        Both count a shared block's weights once per application (``Totals.stored_params``)."""
        if self.precision == "int8":
            return flatbuffer_estimate(t.stored_params, t.operators, t.channels)
        return t.stored_params * BYTES_PER_VALUE[self.precision]

    def violations(self, t: Totals, genome: Genome, repairable_only: bool = False) -> list[str]:
        """Every limit ``t`` breaks, as text; ``repairable_only``: only those narrower widths can fix."""
        out = []
        if self.max_params is not None and t.params > self.max_params:
            out.append(f"params {t.params:,} > budget {self.max_params:,}")
        required = None if repairable_only else self.required_rf(genome)
        if required is not None and t.receptive_field < required:
            out.append(f"receptive field {t.receptive_field} < required {required}")
        if self.max_macs is not None and t.macs > self.max_macs:
            out.append(f"MACs {t.macs:,} > limit {self.max_macs:,}")
        if self.max_ram is not None and self.ram_bytes(t) > self.max_ram:
            out.append(f"ram {self.ram_bytes(t):,} B > {self.max_ram:,} B ({self.precision})")
        if self.max_flash is not None and self.flash_bytes(t) > self.max_flash:
            out.append(f"flash {self.flash_bytes(t):,} B > {self.max_flash:,} B ({self.precision})")
        return out

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
        if self.max_ram is not None:
            parts.append(f"ram <= {self.max_ram:,} B ({self.precision})")
        if self.max_flash is not None:
            parts.append(f"flash <= {self.max_flash:,} B ({self.precision})")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class Verdict:
    """Whether a genome fits, with every violated limit as a readable reason."""

    params: int
    macs: int
    receptive_field: int
    violations: tuple[str, ...] = field(default_factory=tuple)
    ram: int = 0  # bytes of peak activations at the limits' precision
    flash: int = 0  # bytes of weights at the limits' precision

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        return "OK: within budget" if self.ok else "REJECTED: " + "; ".join(self.violations)


def check(genome: Genome, limits: Limits) -> Verdict:
    """Analytic check, no model built; raises ``GenomeError`` if the genome itself is malformed."""
    t = totals(genome)
    return Verdict(t.params, t.macs, t.receptive_field, tuple(limits.violations(t, genome)), limits.ram_bytes(t),
                   limits.flash_bytes(t))


def parse_min_rf(text: str | None) -> int | str | None:
    """``--min-rf`` value: a positive integer or ``auto``; raises ValueError otherwise."""
    if text is None:
        return None
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"--min-rf must be a positive integer or 'auto', got {text!r}")
