"""Training insight: per-layer statistics in the history, without disturbing training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faltung import Sequential
from faltung.explain import activations
from faltung.explain.plots import plot_layer_statistics
from faltung.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import SGD
from faltung.train import Trainer
from faltung.train.insight import LayerStatistics

from ..synthetic import synthetic_arrays


def small_net(seed=0):
    return Sequential(
        [
            ("conv1", Conv2D(1, 4, 5)),
            ("pool1", MaxPool2D(2)),
            ("relu1", ReLU()),
            ("flatten", Flatten()),
            ("fc1", Dense(4 * 12 * 12, 32)),
            ("sigmoid", Sigmoid()),
            ("dropout", Dropout(0.3)),
            ("fc2", Dense(32, 10)),
        ],
        seed=seed,
    )


@pytest.fixture(scope="module")
def data():
    arrays = synthetic_arrays(300, 10, seed=5)
    return arrays["train_images"][:, None] / np.float32(255), arrays["train_labels"].astype(int)


def fit(data, callbacks, lr=0.05):
    model = small_net()
    trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=lr, momentum=0.9),
                      data, epochs=2, batch_size=25, callbacks=callbacks)  # fmt: skip
    return model, trainer.fit()


def test_every_epoch_records_per_layer_statistics(data):
    model, history = fit(data, [LayerStatistics(probe_size=64)])
    row = history.rows[-1]
    for key in ("conv1.mean", "conv1.std", "relu1.zero_frac", "sigmoid.saturated",
                "conv1.grad_norm", "fc1.grad_norm", "fc2.grad_norm", "insight_seconds"):  # fmt: skip
        assert key in row, key
    assert "flatten.mean" not in row and "dropout.mean" not in row  # repeats of the layer before
    assert "relu1.grad_norm" not in row  # no parameters
    assert 0 <= row["relu1.zero_frac"] <= 1 and 0 <= row["sigmoid.saturated"] <= 1
    # The numbers are those of the probe batch the callback chose, through the final model.
    probe = data[0][np.sort(np.random.default_rng(0).permutation(len(data[0]))[:64])]
    outputs = activations(model, probe)
    assert row["conv1.mean"] == pytest.approx(float(outputs["conv1"].mean()), abs=1e-5)
    assert row["relu1.zero_frac"] == pytest.approx(float(np.mean(outputs["relu1"] == 0)), abs=1e-6)
    sig = outputs["sigmoid"]
    assert row["sigmoid.saturated"] == pytest.approx(float(np.mean((sig > 0.99) | (sig < 0.01))))


def test_statistics_leave_training_bit_for_bit_unchanged(data):
    with_stats, _ = fit(data, [LayerStatistics()])
    without, _ = fit(data, [])
    for key, value in without.state_dict().items():
        np.testing.assert_array_equal(with_stats.state_dict()[key], value, err_msg=key)


def test_saturation_shows_when_the_sigmoid_is_driven_hard(data):
    """A learning rate far too high pushes the sigmoid layer into saturation: visible."""
    _, history = fit(data, [LayerStatistics()], lr=3.0)
    assert history.rows[-1]["sigmoid.saturated"] > 0.3


def test_history_files_and_layers_png(data, tmp_path):
    _, history = fit(data, [LayerStatistics(probe_size=32)])
    history.save_json(tmp_path / "history.json")
    history.save_csv(tmp_path / "history.csv")
    rows = json.loads((tmp_path / "history.json").read_text())
    assert "sigmoid.saturated" in rows[0]
    assert "relu1.zero_frac" in (tmp_path / "history.csv").read_text().splitlines()[0]
    path = plot_layer_statistics(history, tmp_path / "layers.png")
    assert path is not None and path.stat().st_size > 10_000
