"""Extensions that fire during training (Chainer's extensions, Keras' callbacks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Override any hook. ``logs`` holds running means of the current epoch."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_record(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """Add fields to the epoch's ``row`` before the history records it."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar per epoch with loss, accuracy and images/s; silent off a terminal."""

    def __init__(self, stream: TextIO | None = None, force: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self._bar = None

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            self.enabled = False
            return
        self._bar = tqdm(
            total=trainer.steps_per_epoch,
            initial=trainer.step,
            desc=f"epoch {epoch + 1}/{trainer.epochs}",
            unit="batch",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def on_batch_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if step % 10 == 0 or step == trainer.steps_per_epoch - 1:
            self._bar.set_postfix(
                loss=f"{logs['loss']:.4f}",
                acc=f"{logs['acc']:.3f}",
                img_s=f"{logs['images_per_s']:.0f}",
            )

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        self._close()

    def on_train_end(self, trainer: Trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EpochPrinter(Callback):
    """One line per epoch on stdout: the article prints the loss of every epoch."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        parts = [
            f"epoch {epoch + 1:>3}/{trainer.epochs}",
            f"loss {row['loss']:.4f}",
            f"train acc {row['train_acc']:.4f}",
        ]
        for key in ("val_acc", "test_acc"):
            if row.get(key) is not None:
                parts.append(f"{key.replace('_', ' ')} {row[key]:.4f}")
        parts += [
            f"lr {row['lr']:.3g}",
            f"{row['seconds']:.1f}s",
            f"{row['images_per_s']:.0f} img/s",
        ]
        print("  ".join(parts), file=self.stream, flush=True)


class HistoryWriter(Callback):
    """Writes the history so far as ``history.json`` and ``history.csv`` after every epoch.

    Checkpoints are the Trainer's own (``checkpoint_path``), so that the file written at an
    epoch's end and the one written on Ctrl-C can never disagree.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.directory / "history.json", self.directory / "history.csv"

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        json_path, csv_path = self.paths
        trainer.history.save_json(json_path)
        trainer.history.save_csv(csv_path)
