"""The fit loop: mini-batch training with callbacks, exact resume and divergence guards.

Resuming is exact: a checkpoint stores the model, the optimiser state, the epoch and the
step inside it, the shuffling generator as it was when the epoch began (so the epoch's
order is drawn again identically), the dropout generators, and the epoch's running sums.
With the same thread count, a resumed run ends bit for bit where an uninterrupted one does.

Checkpoints have one owner, the Trainer: given ``checkpoint_path``, it writes the file after
every ``checkpoint_every`` epochs (and the last), and on Ctrl-C at the step boundary, and
names it when training diverges. Callbacks only observe.

Data-parallel (``comm`` with more than one rank, see ``faltung.distributed``): every rank
draws the same permutation and takes its shard of each global batch; one Allreduce per step
sums the shard-weighted gradients, the batch-norm running statistics and the step's loss,
hits and Ctrl-C flag, so that every rank takes the same step and stops at the same one.
Rank 0 alone writes the checkpoint, which holds every rank's dropout generator.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import io as model_io
from .. import parallel
from ..datasets import ImageArray
from ..distributed import Communicator, FlatReducer
from ..losses import Loss, SoftmaxCrossEntropy
from ..model import Sequential
from ..optim import Optimizer
from ..schedules import Schedule
from .callbacks import Callback
from .history import History
from .metrics import evaluate

CHECKPOINT_FORMAT = "faltung-checkpoint"


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: training stopped at a step boundary (after saving, when it can)."""


def hits(outputs: np.ndarray, targets: np.ndarray) -> int:
    """Images whose highest output is their class: integer labels (N,), or per-class
    targets (N, K) such as one-hot rows, whose highest entry is the class."""
    classes = targets if targets.ndim == 1 else targets.argmax(axis=1)
    return int(np.count_nonzero(outputs.argmax(axis=1) == classes))


def batch_indices(order: np.ndarray, step: int, batch_size: int) -> np.ndarray:
    """The positions that make up batch ``step`` of an epoch shuffled into ``order``.

    A pure function of its arguments, so a run resumed at any step sees the same batches;
    the last batch of an epoch may be short.
    """
    return order[step * batch_size : (step + 1) * batch_size]


class Trainer:
    """Trains ``model`` on (images, labels) with ``loss`` and ``optimizer``.

    A model that ends in a Softmax layer is trained with SoftmaxCrossEntropy on the scores
    before it (``model.before_softmax()``, the same layers): the cross-entropy of its
    probabilities, computed stably, rather than of a second softmax.

    A model in eval mode is switched to training mode; one already training keeps each
    layer's own mode, so that a layer frozen with its own ``eval()`` (a batch norm whose
    statistics should stay put) stays frozen through training and validation, keeping
    what backward needs (``keep_cache``).

    >>> # trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01),
    >>> #                   (x, y), epochs=5, batch_size=64, test_data=(xt, yt))
    >>> # history = trainer.fit()
    """

    def __init__(
        self,
        model: Sequential,
        loss: Loss,
        optimizer: Optimizer,
        train_data: tuple[np.ndarray, np.ndarray],
        epochs: int,
        batch_size: int,
        schedule: Schedule | None = None,
        test_data: tuple[np.ndarray, np.ndarray] | None = None,
        val_data: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: Sequence[Callback] = (),
        seed: int = 0,
        drop_last: bool = False,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 1,
        config: dict[str, Any] | None = None,
        eval_batch_size: int | None = None,
        comm: Communicator | None = None,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ) -> None:
        """``augment(images, rng)`` transforms each training batch; its generator is seeded
        with (seed, epoch, step), so batches are reproducible and resume stays exact. Images
        given as an ``ImageArray`` are transformed as pixels in [0, 1], before their
        standardisation."""
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
        images, labels = train_data
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"training data: {len(images)} images and {len(labels)} labels")
        if drop_last and len(images) < batch_size:
            raise ValueError(f"drop_last with {len(images)} images leaves no batch of {batch_size}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        # SoftmaxCrossEntropy applies the softmax itself: a model that ends in one learns
        # through the scores before it, the same layers (the same loss, computed stably).
        fused = isinstance(loss, SoftmaxCrossEntropy) and model.ends_in_softmax
        self.trained = model.before_softmax() if fused else model
        self.images, self.labels = images, labels
        self.test_data, self.val_data = test_data, val_data
        self.epochs, self.batch_size, self.drop_last = epochs, batch_size, drop_last
        self.callbacks = list(callbacks)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_every = checkpoint_every
        self.config = dict(config or {})
        self.eval_batch_size = eval_batch_size
        self.comm = comm or Communicator()
        self.reducer: FlatReducer | None = None
        if self.comm.size > 1:
            if batch_size < self.comm.size:
                raise ValueError(
                    f"batch size {batch_size} leaves some of the {self.comm.size} processes "
                    "without images; use a batch at least as large as the process count"
                )
            last = len(images) % batch_size
            synced = any(hasattr(layer, "process_group") for _, layer in model.named_layers())
            if synced and not drop_last and 0 < last < self.comm.size:
                raise ValueError(
                    f"the last batch of each epoch ({last} of {len(images)} images) leaves "
                    f"some of the {self.comm.size} processes without images, which "
                    "SyncBatchNorm cannot do without; change the batch size or drop_last"
                )
            float_buffers = [
                (layer.buffers, key)
                for _, layer in model.named_layers()
                for key, value in layer.buffers.items()
                if np.issubdtype(value.dtype, np.floating)
            ]
            self.reducer = FlatReducer(self.comm, optimizer.params, float_buffers, scalars=3)
            for _, layer in self._layers_with_rng():  # rank r: rank 0's stream jumped r times
                layer.rng = np.random.Generator(layer.rng.bit_generator.jumped(self.comm.rank))
        self.rng = np.random.default_rng(seed)
        self.seed, self.augment = seed, augment
        self.history = History()
        self.epoch = 0  # the epoch in progress (or next to start)
        self.step = 0  # the next step inside that epoch
        self._epoch_rng_state: dict[str, Any] | None = None
        self._sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self._interrupt_requested = False
        self._stop_agreed = False

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    # -- the loop ------------------------------------------------------------------------
    def fit(self) -> History:
        self._train_mode()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        # Overflow warnings would only precede our own divergence check, which names the
        # epoch and step; they would add noise, not information.
        with self._graceful_interrupts(), np.errstate(over="ignore", invalid="ignore"):
            while self.epoch < self.epochs:
                self._run_epoch()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _run_epoch(self) -> None:
        epoch, steps = self.epoch, self.steps_per_epoch
        if self.step == 0:
            self._epoch_rng_state = self.rng.bit_generator.state
        else:  # resuming inside an epoch: redraw the same order
            self.rng.bit_generator.state = self._epoch_rng_state
        order = self.rng.permutation(len(self.images))
        for cb in self.callbacks:
            cb.on_epoch_begin(self, epoch)
        self._train_mode()
        learn = self._learn if self.reducer is None else self._learn_together
        while self.step < steps:
            started = time.perf_counter()
            index = batch_indices(order, self.step, self.batch_size)
            if self.schedule is not None:
                # The schedule at the middle of the step: a warm-up from 0 then starts
                # above 0, and a cosine decay to 0 still moves in its last step.
                self.optimizer.lr = self.schedule(epoch + (self.step + 0.5) / steps)
            loss_sum, correct = learn(epoch, index)
            self.optimizer.step()
            sums = self._sums
            sums["loss"] += loss_sum
            sums["correct"] += correct
            sums["seen"] += len(index)
            sums["seconds"] += time.perf_counter() - started
            self.step += 1
            logs = {
                "loss": sums["loss"] / sums["seen"],
                "acc": sums["correct"] / sums["seen"],
                "images_per_s": sums["seen"] / max(sums["seconds"], 1e-9),
            }
            for cb in self.callbacks:
                cb.on_batch_end(self, self.step - 1, logs)
            if self._stop_agreed if self.reducer else self._interrupt_requested:
                self._stop_for_interrupt()
        row = self._finish_epoch_row(epoch)
        for cb in self.callbacks:
            cb.on_epoch_record(self, epoch, row)
        self.history.append(row)
        self.epoch, self.step = epoch + 1, 0
        self._sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        due = (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs
        if self.checkpoint_path is not None and due:
            self.save_checkpoint(self.checkpoint_path)
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, row)

    def _batch(
        self, epoch: int, index: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of the batch ``index`` (only its ``rows``, if given).

        Augmentation draws from a generator seeded by (seed, epoch, step), so a resumed run
        sees the same batches; it transforms the whole batch, so that every rank's rows are
        what one process would have seen.
        """
        if self.augment is None:
            chosen = index if rows is None else index[rows]
            return self.images[chosen], self.labels[chosen]
        rng = np.random.default_rng([self.seed, epoch, self.step])
        if isinstance(self.images, ImageArray):  # pixels, not standardised values
            images = self.images.transformed(index, lambda x: self.augment(x, rng))
        else:
            images = self.augment(self.images[index], rng)
        labels = self.labels[index]
        return (images, labels) if rows is None else (images[rows], labels[rows])

    def _learn(self, epoch: int, index: np.ndarray) -> tuple[float, int]:
        """Forward and backward on one batch; returns the summed loss and the hits."""
        images, labels = self._batch(epoch, index)
        logits = self.trained.forward(images)
        loss = self.loss.forward(logits, labels)
        if not math.isfinite(loss):
            raise self._diverged(f"the loss became {loss}")
        self.trained.backward(self.loss.backward())
        for p in self.optimizer.params:
            if p.grad is not None and not np.isfinite(p.grad).all():
                raise self._diverged(f"the gradient of {p.name} became NaN or infinite")
        return loss * len(index), hits(logits, labels)

    def _learn_together(self, epoch: int, index: np.ndarray) -> tuple[float, int]:
        """This rank's shard of the batch, then the one Allreduce of the step.

        Each rank's loss is the mean over its shard; scaled by the shard's share of the
        batch, the summed gradients are those of the mean over the whole batch, however
        unevenly it splits. Checks run on the summed values, so all ranks agree on them.
        """
        local = self.comm.shard(np.arange(len(index)))
        loss_sum, correct = 0.0, 0
        if len(local):
            images, labels = self._batch(epoch, index, local)
            logits = self.trained.forward(images)
            loss = self.loss.forward(logits, labels)
            dlogits = self.loss.backward()
            self.trained.backward(dlogits * dlogits.dtype.type(len(local) / len(index)))
            loss_sum = loss * len(local)
            correct = hits(logits, labels)
        stop = float(self._interrupt_requested)
        loss_sum, correct, stop = self.reducer.reduce([loss_sum, correct, stop], len(local) > 0)
        self._stop_agreed = stop > 0
        if not math.isfinite(loss_sum):
            raise self._diverged(f"the loss became {loss_sum / len(index)}")
        if not self.reducer.gradients_finite():
            bad = next(p.name for p in self.optimizer.params if not np.isfinite(p.grad).all())
            raise self._diverged(f"the gradient of {bad} became NaN or infinite")
        return float(loss_sum), int(correct + 0.5)

    def _train_mode(self) -> None:
        if not self.model.training:
            self.model.train()
        # The body of a Softmax model shares the layers: only its own flag follows.
        self.trained.training, self.trained.keep_cache = True, False
        for _, layer in self.model.named_layers():
            if not layer.training:  # frozen, but backward still passes through it
                layer.keep_cache = True

    def _layers_with_rng(self) -> list[tuple[str, Any]]:
        """(dotted name, layer) of every layer with a random generator, blocks included."""
        return [(name, layer) for name, layer in self.model.named_layers() if hasattr(layer, "rng")]

    def _finish_epoch_row(self, epoch: int) -> dict[str, Any]:
        sums = self._sums
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": sums["loss"] / sums["seen"],
            "train_acc": sums["correct"] / sums["seen"],
            "lr": self.optimizer.lr,
            "seconds": round(sums["seconds"], 3),
            "images_per_s": round(sums["seen"] / max(sums["seconds"], 1e-9), 1),
        }
        for key, data in (("val", self.val_data), ("test", self.test_data)):
            if data is not None:
                result = evaluate(
                    self.model, *data, batch_size=self.eval_batch_size, comm=self.comm
                )
                row[f"{key}_loss"], row[f"{key}_acc"] = result.loss, result.accuracy
        self._train_mode()
        return row

    def _diverged(self, what: str) -> TrainingDiverged:
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        kept = (
            f"; the last good checkpoint is kept at {self.checkpoint_path}"
            if self.checkpoint_path is not None and self.checkpoint_path.exists()
            else ""
        )
        return TrainingDiverged(
            f"training diverged at {where}: {what}{kept}; try a smaller learning rate"
        )

    # -- Ctrl-C --------------------------------------------------------------------------
    def _graceful_interrupts(self):
        trainer = self

        class Guard:
            def __enter__(self):
                self.previous = None
                if threading.current_thread() is threading.main_thread():
                    self.previous = signal.signal(signal.SIGINT, self.handle)

            def handle(self, signum, frame):
                if trainer._interrupt_requested:  # a second Ctrl-C: stop at once
                    raise KeyboardInterrupt
                trainer._interrupt_requested = True

            def __exit__(self, *exc):
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)
                trainer._interrupt_requested = False

        return Guard()

    def _stop_for_interrupt(self) -> None:
        where = f"epoch {self.epoch + 1}, step {self.step}/{self.steps_per_epoch}"
        if self.checkpoint_path is None:
            raise TrainingInterrupted(f"interrupted at {where}; no checkpoint was configured")
        self.save_checkpoint(self.checkpoint_path)
        raise TrainingInterrupted(
            f"interrupted at {where}; saved {self.checkpoint_path}; continue with --resume"
        )

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the checkpoint atomically; with several ranks a collective, rank 0 writes."""
        rank_rng_states = self.comm.allgather(
            {name: layer.rng.bit_generator.state for name, layer in self._layers_with_rng()}
        )
        if not self.comm.is_root:
            return Path(path)
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in self.optimizer.state_dict().items()})
        header = model_io.file_header(
            CHECKPOINT_FORMAT,
            self.model,
            epoch=self.epoch,
            step=self.step,
            epochs=self.epochs,
            batch_size=self.batch_size,
            config=self.config,
            rng_state=self.rng.bit_generator.state,
            epoch_rng_state=self._epoch_rng_state,
            layer_rng_states=rank_rng_states[0],
            ranks=self.comm.size,
            threads=parallel.get_num_threads(),
            **({"rank_layer_rng_states": rank_rng_states} if self.comm.size > 1 else {}),
            sums=self._sums,
            history=self.history.rows,
        )
        return model_io.write_archive(path, arrays, header)

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Restore everything needed to continue exactly; validates before changing anything.

        With several ranks rank 0 reads the file and sends it to the others. A checkpoint of
        N ranks continues exactly on N; on another count only the dropout masks differ.
        """
        header, arrays = self.comm.on_root(model_io.read_archive, path, CHECKPOINT_FORMAT)
        with self.comm.together():
            return self._restore(path, header, arrays)

    def _restore(self, path: str | Path, header: dict[str, Any], arrays: dict) -> dict[str, Any]:
        if header["architecture"] != model_io.json_roundtrip(self.model.config()):
            raise model_io.ModelFileError(
                f"{path}: checkpoint of another architecture "
                f"({model_io.describe(header['architecture'])})"
            )
        if header.get("batch_size") != self.batch_size:
            raise model_io.ModelFileError(
                f"{path}: checkpoint was trained with batch size {header.get('batch_size')}, "
                f"not {self.batch_size}; resume with the same settings"
            )
        model_state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
        optim_state = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
        try:
            snapshot = self.model.state_dict()
            self.model.load_state_dict(model_state)
            try:
                self.optimizer.load_state_dict(optim_state)
            except (ValueError, KeyError):
                self.model.load_state_dict(snapshot)
                raise
            layers = dict(self.model.named_layers())
            saved_ranks = header.get("rank_layer_rng_states", [header["layer_rng_states"]])
            rank = self.comm.rank
            for name, state in saved_ranks[min(rank, len(saved_ranks) - 1)].items():
                layer = layers[name]
                layer.rng.bit_generator.state = state
                if rank >= len(saved_ranks):  # a rank the checkpoint had not: a stream of its own
                    layer.rng = np.random.Generator(layer.rng.bit_generator.jumped(rank))
            self.rng.bit_generator.state = header["rng_state"]
        except (ValueError, KeyError, TypeError) as error:
            raise model_io.ModelFileError(f"{path}: checkpoint does not fit ({error})") from None
        self._epoch_rng_state = header["epoch_rng_state"]
        self.epoch, self.step = int(header["epoch"]), int(header["step"])
        self._sums = dict(header["sums"])
        self.history = History(header["history"])
        return header
