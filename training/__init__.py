"""Training engine: resident data, batched on-device augmentation, one config dataclass."""

from training.data import DATASETS, DataError, Splits, check_genome_fits, load_splits
from training.engine import EpochMetrics, TrainConfig, TrainResult, Trainer, evaluate, parameter_groups, resolve_device, train

__all__ = ["DATASETS", "DataError", "EpochMetrics", "Splits", "TrainConfig", "TrainResult", "Trainer",
           "check_genome_fits", "evaluate", "load_splits", "parameter_groups", "resolve_device", "train"]
