"""Sequential: names, state dicts, strict loading, seeds, save/load, summary."""

from __future__ import annotations

import numpy as np
import pytest

from faltung import Sequential, parallel
from faltung.io import ModelFileError, ModelMetadata, load_model, load_weights, save_model
from faltung.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU


def small_model(seed=0, width=4):
    return Sequential(
        [
            ("conv1", Conv2D(1, width, 3)),
            ("bn1", BatchNorm2D(width)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(2)),
            ("flat", Flatten()),
            ("drop", Dropout(0.5)),
            ("fc", Dense(width * 3 * 3, 10)),
        ],
        seed=seed,
    )


def test_default_names_are_indices():
    model = Sequential([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(2 * 4 * 4, 3)], seed=0)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = small_model(1).state_dict(), small_model(1).state_dict(), small_model(2).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_same_seed_same_dropout_masks():
    x = np.ones((4, 1, 8, 8), np.float32)
    np.testing.assert_array_equal(small_model(5)(x), small_model(5)(x))


def test_state_dict_includes_buffers_and_is_a_copy():
    model = small_model()
    state = model.state_dict()
    assert {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"} <= set(state)
    state["fc.weight"][:] = 0
    assert model["fc"].params["weight"].any()


def test_load_state_dict_is_strict_and_atomic():
    model, other = small_model(0), small_model(1)
    before = model.state_dict()
    bad = other.state_dict()
    bad["fc.weight"] = bad["fc.weight"][:, :-1]
    del bad["conv1.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    assert "missing ['conv1.bias']" in message
    assert "unexpected ['extra.weight']" in message
    assert "fc.weight: shape (10, 35) does not match the model's (10, 36)" in message
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "nothing may change"


def test_load_state_dict_refuses_nan():
    model = small_model()
    state = model.state_dict()
    state["fc.bias"][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.load_state_dict(state)


def test_save_load_round_trip_reproduces_outputs_exactly(tmp_path):
    model = small_model(3)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    model(x)  # move the batch-norm running statistics away from their defaults
    model.eval()
    expected = model(x)
    path = save_model(model, tmp_path / "m.npz", metadata={"note": "hi"})
    loaded, meta = load_model(path)
    np.testing.assert_array_equal(loaded(x), expected)
    assert meta.extra == {"note": "hi"} and meta.to_json()["note"] == "hi"
    fresh = small_model(9).eval()
    load_weights(fresh, path)
    np.testing.assert_array_equal(fresh(x), expected)


def test_load_weights_refuses_another_architecture(tmp_path):
    path = save_model(small_model(), tmp_path / "m.npz")
    other = small_model(width=5)
    before = other.state_dict()
    with pytest.raises(ModelFileError, match="another architecture"):
        load_weights(other, path)
    assert all(np.array_equal(before[k], v) for k, v in other.state_dict().items())


def test_model_files_hold_no_pickles(tmp_path):
    path = save_model(small_model(), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)


def test_summary_lists_shapes_and_parameter_counts():
    text = small_model().summary((1, 8, 8))
    assert "(N, 4, 6, 6)" in text and "(N, 10)" in text
    assert f"Total parameters: {small_model().num_parameters():,}" in text


def test_float64_model_keeps_float64():
    model = small_model().astype(np.float64)
    assert model(np.ones((2, 1, 8, 8))).dtype == np.float64


def test_predict_runs_in_batches_and_restores_training_mode():
    model = small_model()
    x = np.random.default_rng(0).standard_normal((7, 1, 8, 8)).astype(np.float32)
    probs = model.predict_proba(x, batch_size=3)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x, batch_size=2), probs.argmax(axis=1))
    assert model.training


def test_strict_loading_demands_the_exact_dtype():
    model = small_model()
    state = {
        k: v.astype(np.float64) if v.dtype == np.float32 else v
        for k, v in model.state_dict().items()
    }
    with pytest.raises(
        ValueError, match="conv1.weight: dtype float64 does not match the model's float32"
    ):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)  # converts, as a user may ask
    assert model["conv1"].params["weight"].dtype == np.float32


def test_float64_model_round_trips_with_its_dtype(tmp_path):
    model = small_model().astype(np.float64)
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.dtype == np.float64


def test_large_eval_batches_run_in_chunks_with_the_same_result():
    model = small_model().eval()
    x = np.random.default_rng(0).standard_normal((300, 1, 8, 8)).astype(np.float32)
    model.inference_chunk = 64
    chunked = model(x)
    model.inference_chunk = 10_000
    np.testing.assert_allclose(chunked, model(x), rtol=1e-5, atol=1e-6)


def test_metadata_round_trips_with_typed_fields(tmp_path):
    meta = ModelMetadata(
        input_shape=(1, 8, 8),
        classes=tuple("abcdefghij"),
        dataset="mnist",
        preset="tiny",
        settings={"seed": 3},
        test_indices=(0, 5, 9),
        extra={"note": "kept"},
    )
    path = save_model(small_model(), tmp_path / "m.npz", meta)
    model, loaded = load_model(path)
    assert loaded == meta and isinstance(loaded.input_shape, tuple)
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert not model.training


def test_old_files_without_metadata_get_inferred_defaults(tmp_path):
    # small_model ends in Dense(36, 10) after a 3x3 conv and a 2x2 pool: 8x8 inputs.
    _, meta = load_model(save_model(small_model(), tmp_path / "m.npz"))
    assert meta.input_shape == (1, 8, 8)
    assert meta.classes == tuple(str(i) for i in range(10))
    assert meta.test_indices is None and meta.dataset is None and meta.extra == {}
    rgb = Sequential([Conv2D(3, 2, 3), Flatten(), Dense(2 * 26 * 26, 4)], seed=0)
    _, meta = load_model(save_model(rgb, tmp_path / "rgb.npz"))
    assert meta.input_shape == (3, 28, 28) and meta.classes == ("0", "1", "2", "3")


def test_metadata_of_the_wrong_type_is_a_model_file_error(tmp_path):
    path = save_model(small_model(), tmp_path / "m.npz", {"input_shape": "big"})
    with pytest.raises(ModelFileError, match="metadata"):
        load_model(path)


def test_a_model_ending_in_softmax_gives_its_outputs_as_probabilities():
    from faltung.layers import Softmax

    head = [("flat", Flatten()), ("fc", Dense(16, 3))]
    logits_model = Sequential(head, seed=0)
    model = Sequential([*head, ("probs", Softmax())])
    x = np.random.default_rng(1).random((5, 1, 4, 4), dtype=np.float32)
    assert model.ends_in_softmax and not logits_model.ends_in_softmax
    np.testing.assert_allclose(model.predict_proba(x), logits_model.predict_proba(x), rtol=1e-6)
    body = model.before_softmax()
    assert list(body.layers) == ["flat", "fc"] and body.layers["fc"] is model.layers["fc"]
    assert list(model.layers) == ["flat", "fc", "probs"]  # the model itself is unchanged
    with pytest.raises(ValueError, match="must end in a Softmax"):
        logits_model.before_softmax()


def test_an_empty_batch_predicts_nothing_of_the_right_shape():
    model = Sequential([("flat", Flatten()), ("fc", Dense(16, 3))], seed=0)
    x = np.zeros((0, 1, 4, 4), np.float32)
    assert model.predict(x).shape == (0,) and model.predict_proba(x).shape == (0, 3)


def test_a_model_files_metadata_prepares_images_as_training_did(tmp_path):
    model = Sequential([("flat", Flatten()), ("fc", Dense(4, 2))], seed=0)
    meta = ModelMetadata(input_shape=(1, 2, 2), preprocessing={"mean": [0.5], "std": [0.25]})
    save_model(model, tmp_path / "m.npz", meta)
    _, loaded = load_model(tmp_path / "m.npz")
    pixels = np.array([[[[0, 255], [51, 204]]]], np.uint8)
    np.testing.assert_allclose(loaded.prepare(pixels), [[[[-2, 2], [-1.2, 1.2]]]], rtol=1e-6)
    plain = ModelMetadata(input_shape=(1, 2, 2))  # the presets: pixels in [0, 1]
    np.testing.assert_allclose(plain.prepare(pixels), pixels / 255, rtol=1e-6)
    for dtype in (np.uint16, np.int64):  # integer levels of any type, as predict reads them
        np.testing.assert_array_equal(loaded.prepare(pixels.astype(dtype)), loaded.prepare(pixels))


def _bn_model() -> Sequential:
    layers = [("conv", Conv2D(1, 2, 3)), ("bn", BatchNorm2D(2)), ("relu", ReLU())]
    model = Sequential([*layers, ("flat", Flatten()), ("fc", Dense(8, 2))], seed=0)
    return model.astype(np.float64)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_training_layer_in_an_eval_model_sees_the_whole_batch(threads):
    """Re-estimating batch norm's statistics (the model in eval mode, the norm training)
    takes a batch of 100 as one batch, split over threads or not, never as chunks of
    ``inference_chunk`` images with statistics of their own."""
    x = np.random.default_rng(0).standard_normal((100, 1, 4, 4))
    x[64:] += 5.0
    before = parallel.get_num_threads()
    parallel.set_num_threads(threads)
    try:
        chunked, whole = _bn_model(), _bn_model()
        for model in (chunked, whole):
            model.eval()
            model["bn"].train()
        whole.inference_chunk = len(x)
        np.testing.assert_allclose(chunked.forward(x), whole.forward(x), rtol=1e-12)
    finally:
        parallel.set_num_threads(before)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(chunked["bn"].buffers[key], whole["bn"].buffers[key])
    assert int(chunked["bn"].buffers["num_batches_tracked"]) == 1


def test_dropout_left_training_in_an_eval_model_still_runs_in_chunks():
    """Monte Carlo dropout: each image's output is its own, so a large batch still runs
    in chunks of ``inference_chunk`` (memory does not grow with the batch)."""
    model = Sequential([("flat", Flatten()), ("drop", Dropout(0.5)), ("fc", Dense(16, 2))], seed=0)
    model.eval()
    model["drop"].train()
    sizes = []
    forward = model["fc"].forward
    model["fc"].forward = lambda x: sizes.append(len(x)) or forward(x)
    before = parallel.get_num_threads()
    parallel.set_num_threads(1)
    try:
        y = model.forward(np.ones((200, 1, 4, 4), np.float32))
    finally:
        parallel.set_num_threads(before)
    assert y.shape == (200, 2) and sizes == [64, 64, 64, 8]


def test_a_softmax_over_the_batch_axis_sees_the_whole_batch_in_eval_mode():
    from faltung.layers import Softmax

    model = Sequential([("flat", Flatten()), ("fc", Dense(16, 3)), ("sm", Softmax(0))], seed=0)
    model.eval()
    y = model.forward(np.random.default_rng(0).random((200, 1, 4, 4), dtype=np.float32))
    np.testing.assert_allclose(y.sum(axis=0), 1, rtol=1e-5)


def test_a_layer_that_may_not_be_split_runs_whole_in_eval_mode_too():
    """A layer of one's own that mixes the batch says so by refusing to be split; left
    training inside an eval model, it sees the whole batch."""
    from faltung.layers import Layer

    class Center(Layer):
        shardable = False

        def forward(self, x):
            self.sizes.append(len(x))
            return x - x.mean(axis=0) if self.training else x

    center = Center()
    center.sizes = []
    model = Sequential([("center", center), ("flat", Flatten()), ("fc", Dense(16, 2))], seed=0)
    model.eval()
    center.train()
    model.forward(np.ones((200, 1, 4, 4), np.float32))
    assert center.sizes == [200]


def test_inference_leaves_every_layer_in_its_own_mode():
    """predict, summaries and explanations switch to eval mode and back without changing
    the mode of a layer the user set apart (a frozen batch norm), or keep_cache."""
    from faltung.explain import activations, saliency

    x = np.random.default_rng(0).random((8, 1, 4, 4))
    model = _bn_model()
    model.train()
    model["bn"].eval()
    model.predict(x[:2])
    model.summary((1, 4, 4))
    activations(model, x[0])
    saliency(model, x[0], 1)
    assert model.training and not model["bn"].training
    assert all(layer.training for name, layer in model.layers.items() if name != "bn")
    model.forward(x)
    np.testing.assert_array_equal(model["bn"].buffers["running_mean"], 0)
    model.eval(keep_cache=True)
    model.predict(x[:1])
    assert model.keep_cache and all(layer.keep_cache for layer in model.layers.values())
