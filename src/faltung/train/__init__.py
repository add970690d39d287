"""Training: the fit loop, its callbacks, history and evaluation."""

from .callbacks import Callback, EpochPrinter, HistoryWriter, ProgressBar
from .history import History
from .metrics import Evaluation, evaluate
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = [
    "Callback",
    "EpochPrinter",
    "Evaluation",
    "History",
    "HistoryWriter",
    "ProgressBar",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
]
