"""Training: the fit loop, its callbacks, history and evaluation."""

from .callbacks import Callback, Checkpointer, EpochPrinter, ProgressBar
from .history import History
from .metrics import Evaluation, evaluate
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = [
    "Callback",
    "Checkpointer",
    "EpochPrinter",
    "Evaluation",
    "History",
    "ProgressBar",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
]
