"""The fit loop: learning, exact resume, divergence, partial batches, callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faltung import Sequential
from faltung.io import ModelFileError, read_archive
from faltung.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import SGD, Adam
from faltung.schedules import CosineDecay
from faltung.train import Callback, Trainer, TrainingDiverged, TrainingInterrupted, evaluate
from faltung.train.trainer import CHECKPOINT_FORMAT

from ..synthetic import synthetic_arrays


def small_data(n_train=96, n_test=40):
    arrays = synthetic_arrays(n_train, n_test)
    x = arrays["train_images"][:, None].astype(np.float32) / 255
    xt = arrays["test_images"][:, None].astype(np.float32) / 255
    return (x, arrays["train_labels"].astype(np.int64)), (
        xt,
        arrays["test_labels"].astype(np.int64),
    )


def make_trainer(tmp_path=None, epochs=3, lr=0.01, optimizer=Adam, callbacks=(), width=4):
    model = Sequential(
        [
            ("conv", Conv2D(1, width, 5, stride=2)),
            ("relu", ReLU()),
            ("pool", MaxPool2D(2)),
            ("flat", Flatten()),
            ("drop", Dropout(0.3)),
            ("fc", Dense(width * 6 * 6, 10)),
        ],
        seed=7,
    )
    train, test = small_data()
    return Trainer(
        model, SoftmaxCrossEntropy(), optimizer(model.parameters(), lr=lr), train,
        epochs=epochs, batch_size=10, schedule=CosineDecay(lr, epochs, warmup_epochs=0.5),
        test_data=test, callbacks=list(callbacks), seed=3,
        checkpoint_path=None if tmp_path is None else tmp_path / "ckpt.npz",
    )  # fmt: skip


TIMING = ("seconds", "images_per_s")


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_learns_the_synthetic_task():
    trainer = make_trainer(epochs=6)
    history = trainer.fit()
    assert history.last["test_acc"] >= 0.9
    assert history.rows[0]["loss"] > history.last["loss"]
    assert [row["epoch"] for row in history.rows] == [1, 2, 3, 4, 5, 6]
    result = evaluate(trainer.model, *trainer.test_data)
    assert result.confusion.sum() == 40 and result.accuracy == history.last["test_acc"]


def images_seen(trainer):
    """Fit ``trainer`` and return, per epoch, the list of batches of training-image ids."""
    images = trainer.images.copy()
    images[:, 0, 0, 0] = np.arange(len(images))  # each image carries its position
    trainer.images = images
    seen, forward = [], trainer.model.forward

    def spy(x):
        if trainer.model.training:
            if trainer.step == 0:
                seen.append([])
            seen[-1].append(x[:, 0, 0, 0].astype(int).tolist())
        return forward(x)

    trainer.model.forward = spy
    trainer.fit()
    return seen


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_image_once_per_epoch_and_the_partial_batch_unless_dropped(drop_last):
    trainer = make_trainer(epochs=2)
    trainer.drop_last = drop_last
    epochs = images_seen(trainer)
    assert len(epochs) == 2
    for batches in epochs:
        sizes = [len(b) for b in batches]
        ids = [i for b in batches for i in b]
        # 96 images in batches of 10: nine full ones and a last one of 6, unless dropped
        assert sizes == [10] * 9 + ([] if drop_last else [6])
        assert len(set(ids)) == len(ids) == sum(sizes)
        assert set(ids) <= set(range(96)) and (drop_last or set(ids) == set(range(96)))
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    assert trainer.steps_per_epoch == (9 if drop_last else 10)
    assert trainer.history.last["train_acc"] * sum(sizes) == pytest.approx(
        round(trainer.history.last["train_acc"] * sum(sizes))
    )


def test_resume_at_an_epoch_boundary_is_bit_exact(tmp_path):
    straight = make_trainer(epochs=3)
    straight.fit()

    class Killed(Exception):
        pass

    class KillAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            raise Killed  # after the Trainer's own end-of-epoch checkpoint

    with pytest.raises(Killed):
        make_trainer(tmp_path, epochs=3, callbacks=[KillAfterFirstEpoch()]).fit()
    resumed = make_trainer(tmp_path, epochs=3)
    resumed.load_checkpoint(tmp_path / "ckpt.npz")
    assert (resumed.epoch, resumed.step) == (1, 0)
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)
    assert without_timing(resumed.history.rows) == without_timing(straight.history.rows)


def test_the_trainer_checkpoints_every_n_epochs_and_the_last(tmp_path):
    written = []

    class Spy(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            path = tmp_path / "ckpt.npz"
            written.append(
                read_archive(path, CHECKPOINT_FORMAT)[0]["epoch"] if path.exists() else None
            )

    trainer = make_trainer(tmp_path, epochs=5, callbacks=[Spy()])
    trainer.checkpoint_every = 2
    trainer.fit()
    # Written after epochs 2 and 4, and after the last.
    assert written == [None, 2, 2, 4, 5]


class InterruptAt(Callback):
    def __init__(self, epoch, step):
        self.epoch, self.step = epoch, step

    def on_batch_end(self, trainer, step, logs):
        if trainer.epoch == self.epoch and step == self.step:
            trainer._interrupt_requested = True  # what Ctrl-C does


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_exact(tmp_path):
    straight = make_trainer(epochs=3)
    straight.fit()

    interrupted = make_trainer(tmp_path, epochs=3, callbacks=[InterruptAt(1, 4)])
    with pytest.raises(
        TrainingInterrupted, match="epoch 2, step 5/10; saved .*ckpt.npz; continue with --resume"
    ):
        interrupted.fit()
    resumed = make_trainer(tmp_path, epochs=3)
    resumed.load_checkpoint(tmp_path / "ckpt.npz")
    assert (resumed.epoch, resumed.step) == (1, 5)
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)
    assert without_timing(resumed.history.rows) == without_timing(straight.history.rows)


def test_divergence_stops_with_epoch_and_step_and_keeps_the_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, epochs=4, lr=1e30, optimizer=SGD)
    trainer.epochs = 1
    # One sane epoch first, so that a good checkpoint exists.
    trainer.optimizer.lr = trainer.schedule.base_lr = 1e-3
    trainer.schedule = None
    trainer.fit()
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    good = (tmp_path / "ckpt.npz").read_bytes()
    trainer.epochs, trainer.optimizer.lr = 4, 1e30
    with pytest.raises(TrainingDiverged, match=r"at epoch 2, step \d+: the (loss|gradient)"):
        trainer.fit()
    assert (tmp_path / "ckpt.npz").read_bytes() == good


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_gradient_stops_the_step_before_the_update(bad):
    """The loss can stay finite while a gradient does not (an overflow in backward): the
    step stops, names the parameter, and the weights keep their last finite values."""
    trainer = make_trainer(epochs=1)
    conv = trainer.model["conv"]
    backward = conv.backward

    def poisoned(dy):
        dx = backward(dy)
        conv.grads["bias"] = conv.grads["bias"].copy()
        conv.grads["bias"][1] = bad
        return dx

    conv.backward = poisoned
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="at epoch 1, step 1: the gradient of conv.bias"):
        trainer.fit()
    for key, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_huge_finite_gradients_are_not_taken_for_infinite():
    """Each gradient element is checked, not a sum of them, which would overflow."""
    trainer = make_trainer(epochs=1, optimizer=SGD, lr=1e-60)
    fc = trainer.model["fc"]
    backward = fc.backward

    def huge(dy):
        dx = backward(dy)
        fc.grads["weight"] = np.full_like(fc.grads["weight"], 3e38)
        return dx

    fc.backward = huge
    trainer.fit()  # float32's largest is 3.4e38: any two of these would sum to infinity
    assert np.isfinite(fc.params["weight"]).all()


def test_nan_weights_are_never_written(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    good = (tmp_path / "ckpt.npz").read_bytes()
    trainer.model["fc"].params["weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity in model/fc.weight"):
        trainer.save_checkpoint(tmp_path / "ckpt.npz")
    assert (tmp_path / "ckpt.npz").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit()
    trainer.save_checkpoint(tmp_path / "ckpt.npz")
    other = make_trainer(tmp_path, epochs=1, width=5)
    before = other.model.state_dict()
    with pytest.raises(ModelFileError, match="another architecture"):
        other.load_checkpoint(tmp_path / "ckpt.npz")
    assert all(np.array_equal(v, other.model.state_dict()[k]) for k, v in before.items())


def test_callbacks_see_every_step_and_epoch():
    events, accuracy = [], []

    class Recorder(Callback):
        def on_train_begin(self, trainer):
            events.append("begin")

        def on_batch_end(self, trainer, step, logs):
            events.append(("batch", step))
            accuracy.append(logs["acc"])

        def on_epoch_end(self, trainer, epoch, row):
            events.append(("epoch", epoch))

        def on_train_end(self, trainer):
            events.append("end")

    make_trainer(epochs=2, callbacks=[Recorder()]).fit()
    assert events[0] == "begin" and events[-1] == "end"
    assert events.count(("epoch", 0)) == 1 and sum(e[0] == "batch" for e in events[1:-1]) == 20
    assert [e[1] for e in events if e[0] == "batch"] == [*range(10), *range(10)]
    # The running accuracy of the second epoch is far above chance (0.1) on this easy task.
    assert accuracy[0] < 0.5 and accuracy[-1] > 0.6, accuracy


def test_bad_trainer_arguments():
    train, _ = small_data()
    model = Sequential([Flatten(), Dense(784, 10)], seed=0)
    with pytest.raises(ValueError, match="must be positive"):
        Trainer(
            model, SoftmaxCrossEntropy(), SGD(model.parameters()), train, epochs=0, batch_size=5
        )
    with pytest.raises(ValueError, match="96 images and 95 labels"):
        Trainer(
            model, SoftmaxCrossEntropy(), SGD(model.parameters()), (train[0], train[1][:-1]), 1, 5
        )


def test_evaluate_sizes_the_confusion_matrix_by_the_model_not_by_ten():
    model = Sequential([Flatten(), Dense(4, 3)], seed=0)
    x = np.random.default_rng(0).standard_normal((12, 1, 2, 2)).astype(np.float32)
    labels = np.arange(12) % 3
    result = evaluate(model, x, labels)
    assert result.confusion.shape == (3, 3) and result.confusion.sum() == 12
    assert evaluate(model, x, labels, num_classes=5).confusion.shape == (5, 5)
    with pytest.raises(ValueError, match="do not fit a model with 3 outputs"):
        evaluate(model, x, np.full(12, 3))


def test_a_model_ending_in_softmax_trains_as_the_same_model_without_it(tmp_path):
    """Cross-entropy on a final Softmax's output would be a second softmax: the Trainer
    trains the scores before it (the same layers), and checkpoints keep the whole model."""
    from faltung.layers import Softmax
    from faltung.train.insight import LayerStatistics

    plain = make_trainer(epochs=2, optimizer=SGD, callbacks=[LayerStatistics()])
    plain.fit()
    fresh = make_trainer(tmp_path, epochs=2, optimizer=SGD)
    model = Sequential([*fresh.model.layers.items(), ("probs", Softmax())])
    trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01),
                      *small_data()[:1], epochs=2, batch_size=10, seed=3,
                      schedule=CosineDecay(0.01, 2, warmup_epochs=0.5),
                      callbacks=[LayerStatistics()], checkpoint_path=tmp_path / "ckpt.npz")  # fmt: skip
    trainer.fit()
    for key, value in plain.model.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[key], value, rtol=1e-6, err_msg=key)
    for key in ("conv.grad_norm", "fc.grad_norm"):  # the insight's backward pass too
        assert trainer.history.rows[-1][key] == pytest.approx(plain.history.rows[-1][key], 1e-5)
    again = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01),
                    *small_data()[:1], epochs=2, batch_size=10)  # fmt: skip
    again.load_checkpoint(tmp_path / "ckpt.npz")  # the whole model's architecture
    assert list(model.layers)[-1] == "probs" and model.ends_in_softmax


def test_each_step_takes_the_schedule_at_its_middle_so_a_warm_up_never_stands_still():
    """One step per epoch and a warm-up from 0: the step at epoch 0 must still move the
    weights; and a cosine decay to 0 still moves them in its last step."""
    trainer = make_trainer(epochs=2, optimizer=SGD)
    trainer.batch_size = len(trainer.images)  # one step per epoch
    trainer.schedule = CosineDecay(0.1, 2, warmup_epochs=1)
    rates = []

    class Rates(Callback):
        def on_batch_end(self, trainer, step, logs):
            rates.append(trainer.optimizer.lr)

    trainer.callbacks.append(Rates())
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    trainer.epochs = 1
    trainer.fit()
    assert rates == [0.1 * 0.5]  # at epoch 1/2: halfway through the warm-up from 0
    assert not np.array_equal(trainer.model.state_dict()["fc.weight"], before["fc.weight"])
    trainer.epochs = 2
    trainer.fit()
    assert rates[1] == 0.1 * (1 + math.cos(math.pi / 2)) / 2 > 0  # halfway down


def test_one_hot_targets_with_mse_train_and_count_hits():
    from faltung.losses import MSELoss

    (x, y), _ = small_data()
    model = make_trainer(epochs=1).model
    one_hot = np.eye(10, dtype=np.float32)[y]
    trainer = Trainer(model, MSELoss(), SGD(model.parameters(), lr=0.01), (x, one_hot), 1, 10)
    trainer.fit()
    assert 0 <= trainer.history.rows[-1]["train_acc"] <= 1


def test_a_layer_frozen_with_its_own_eval_stays_frozen_through_training():
    """A batch norm set to eval inside a training model keeps its running statistics
    through fit, its validation passes and its layer statistics; a model handed over in
    eval mode is switched to training."""
    from faltung.layers import BatchNorm2D
    from faltung.train.insight import LayerStatistics

    model = Sequential(
        [
            ("conv", Conv2D(1, 4, 5, stride=2)), ("bn", BatchNorm2D(4)), ("relu", ReLU()),
            ("flat", Flatten()), ("fc", Dense(4 * 12 * 12, 10)),
        ],
        seed=0,
    )  # fmt: skip
    model["bn"].eval()
    train, test = small_data()
    trainer = Trainer(
        model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01), train, epochs=2,
        batch_size=10, test_data=test, callbacks=[LayerStatistics()],
    )  # fmt: skip
    trainer.fit()
    assert model.training and model["conv"].training and not model["bn"].training
    assert int(model["bn"].buffers["num_batches_tracked"]) == 0
    np.testing.assert_array_equal(model["bn"].buffers["running_mean"], 0)
    model.eval()
    trainer.epochs = 3
    trainer.fit()
    assert model["bn"].training and int(model["bn"].buffers["num_batches_tracked"]) > 0


def test_a_frozen_layer_of_a_softmax_model_loaded_in_eval_mode_stays_frozen():
    """The trained body of a Softmax model has a mode flag of its own; switching it to
    training must not unfreeze the layers it shares."""
    from faltung.layers import BatchNorm2D, Softmax

    model = Sequential(
        [
            ("conv", Conv2D(1, 4, 5, stride=2)), ("bn", BatchNorm2D(4)), ("relu", ReLU()),
            ("flat", Flatten()), ("fc", Dense(4 * 12 * 12, 10)), ("softmax", Softmax()),
        ],
        seed=0,
    ).eval()  # fmt: skip
    train, _ = small_data()
    trainer = Trainer(
        model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01), train, epochs=1,
        batch_size=10,
    )  # fmt: skip
    model.train()
    model["bn"].eval()
    trainer.fit()
    assert not model["bn"].training and int(model["bn"].buffers["num_batches_tracked"]) == 0
