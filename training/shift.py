"""The one rule for ``translate_px`` (--translate, a genome file's recipe); torch-free, for the CLI's checks."""

__all__ = ["MAX_SHIFT_PX", "is_shift"]

MAX_SHIFT_PX = 64


def is_shift(value: object) -> bool:
    """Whether ``value`` is a valid ``translate_px``: a number of pixels in [0, MAX_SHIFT_PX] (not NaN, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_SHIFT_PX
