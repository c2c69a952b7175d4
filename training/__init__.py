"""Training engine: resident data, batched on-device augmentation, one config dataclass.

The names load torch on first use only, so that ``training.parallel`` can start worker processes
before this process imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AUGMENTATIONS", "DATASETS", "DataError", "EpochMetrics", "Splits", "TrainConfig", "TrainResult", "Trainer",
           "augmentation", "check_genome_fits", "evaluate", "load_splits", "parameter_groups", "predict", "resolve_device",
           "train"]

_DATA = ("DATASETS", "DataError", "Splits", "check_genome_fits", "load_splits")


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("training.data" if name in _DATA else "training.engine"), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
