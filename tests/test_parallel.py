"""A batch split over threads (faltung.parallel, Sequential's sharded passes): the same
numbers as one pass over the whole batch, for every kind of layer that may be split."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import threading
import warnings

import numpy as np
import pytest

from faltung import Sequential, parallel
from faltung._threads import one_blas_thread, openblas_threads
from faltung.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    Residual,
    Sigmoid,
    Softmax,
    SyncBatchNorm2D,
)
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import SGD

BATCH = 3 * parallel.MIN_SHARD + 5  # up to three shards, of unequal size


@pytest.fixture
def threads():
    """Run with ``count`` threads whatever the machine, and restore its setting after."""
    before = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


def network(dropout: float = 0.0) -> Sequential:
    block = Residual(
        [
            ("conv1", Conv2D(4, 4, 3, padding=1)),
            ("relu", ReLU()),
            ("conv2", Conv2D(4, 4, 3, padding=1)),
        ]
    )
    return Sequential(
        [
            ("conv1", Conv2D(1, 4, 3)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(2)),
            ("block", block),
            ("flatten", Flatten()),
            ("fc1", Dense(4 * 5 * 5, 16)),
            ("sigmoid", Sigmoid()),
            ("drop", Dropout(dropout)),
            ("fc2", Dense(16, 10)),
        ],
        seed=0,
    )


def one_step(model: Sequential, x: np.ndarray, y: np.ndarray):
    loss = SoftmaxCrossEntropy()
    logits = model.forward(x)
    value = loss.forward(logits, y)
    dx = model.backward(loss.backward())
    return logits, value, dx, {p.name: p.grad.copy() for p in model.parameters()}


def batch(n: int = BATCH, dtype=np.float32):
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, 1, 12, 12)).astype(dtype), rng.integers(0, 10, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_training_step_gives_the_whole_batch_outputs_and_gradients(threads, dtype):
    x, y = batch(dtype=dtype)
    results = []
    for count in (1, 2, 3):
        threads(count)
        model = network().astype(dtype)
        assert model.shard_count(len(x)) == count
        results.append(one_step(model, x, y))
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    whole_logits, whole_loss, _, whole_grads = results[0]
    for logits, value, dx, grads in results[1:]:
        np.testing.assert_allclose(logits, whole_logits, **tol)
        np.testing.assert_allclose(value, whole_loss, **tol)
        assert dx is None  # the first layer computes no input gradient
        assert grads.keys() == whole_grads.keys()
        for name, grad in grads.items():
            assert grad.dtype == dtype
            np.testing.assert_allclose(grad, whole_grads[name], err_msg=name, **tol)


def test_split_input_gradient_when_the_first_layer_needs_one(threads):
    x, y = batch()
    dxs = []
    for count in (1, 2):
        threads(count)
        model = network()
        model["conv1"].needs_input_grad = True
        dxs.append(one_step(model, x, y)[2])
    assert dxs[1].shape == x.shape
    np.testing.assert_allclose(dxs[1], dxs[0], rtol=1e-5, atol=1e-6)


def test_replicas_share_parameters_and_keep_their_own_caches_and_gradients():
    model = network(dropout=0.5)
    block = model["block"]
    twin = block.replica()
    assert twin.body.layers["conv1"].params is block.body.layers["conv1"].params
    assert twin.body.layers["conv1"] is not block.body.layers["conv1"]
    assert twin.body.layers["conv1"].grads is not block.body.layers["conv1"].grads
    drop = model["drop"]
    assert drop.replica().rng is not drop.rng
    state = drop.rng.bit_generator.state
    drop.eval()
    assert drop.replica().rng is drop.rng  # eval mode draws nothing: the stream stays put
    assert drop.rng.bit_generator.state == state


def test_shards_draw_their_own_dropout_masks(threads):
    threads(2)
    model = Sequential([Flatten(), Dropout(0.5)], seed=0)
    ones = np.ones((2 * parallel.MIN_SHARD, 1, 4, 4), np.float32)
    kept = model.forward(ones) > 0
    assert not np.array_equal(kept[: parallel.MIN_SHARD], kept[parallel.MIN_SHARD :])
    assert 0.3 < kept.mean() < 0.7


def test_split_training_with_dropout_is_repeatable(threads):
    threads(2)
    x, y = batch()
    runs = []
    for _ in range(2):
        model = network(dropout=0.5)
        optimizer = SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            one_step(model, x, y)
            optimizer.step()
        runs.append(model.state_dict())
    for name, value in runs[0].items():
        np.testing.assert_array_equal(runs[1][name], value, err_msg=name)


def test_eval_mode_splits_and_matches_one_pass(threads):
    x, _ = batch(300)
    model = network().eval()
    threads(1)
    whole = model(x)
    threads(2)
    np.testing.assert_allclose(model(x), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(x, batch_size=100).sum(axis=1), 1, rtol=1e-5)
    assert model._split is None  # inference keeps nothing


def norm_network() -> Sequential:
    block = Residual(
        [("conv1", Conv2D(4, 4, 3, padding=1)), ("bn1", BatchNorm2D(4)), ("relu", ReLU())],
        shortcut=[("conv", Conv2D(4, 4, 1)), ("bn", BatchNorm2D(4))],
    )
    layers = [("conv1", Conv2D(1, 4, 3)), ("bn1", BatchNorm2D(4)), ("relu1", ReLU())]
    layers += [("block", block), ("flatten", Flatten()), ("fc", Dense(4 * 10 * 10, 10))]
    return Sequential(layers, seed=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_takes_its_statistics_over_every_shard(threads, dtype):
    x, y = batch(dtype=dtype)
    results, states = [], []
    for count in (1, 2, 3):
        threads(count)
        model = norm_network().astype(dtype)
        assert model.shard_count(len(x)) == count
        results.append(one_step(model, x, y))
        states.append(model.state_dict())
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for (logits, value, _, grads), state in zip(results[1:], states[1:]):
        np.testing.assert_allclose(logits, results[0][0], **tol)
        for name, grad in grads.items():
            np.testing.assert_allclose(grad, results[0][3][name], err_msg=name, **tol)
        for name, value in state.items():  # running statistics moved once, by the whole batch
            np.testing.assert_allclose(value, states[0][name], err_msg=name, **tol)
    assert states[1]["bn1.num_batches_tracked"] == 1


def test_the_reference_kernels_and_sync_batch_norm_keep_the_batch_whole(threads):
    threads(2)
    model = norm_network()
    assert model.shard_count(BATCH) == 2
    model.use_kernels("reference")  # the oracle runs what is written
    assert model.shard_count(BATCH) == 1
    model.eval()
    assert model.shard_count(BATCH) == 2
    synced = Sequential([Conv2D(1, 4, 3), SyncBatchNorm2D(4), Flatten(), Dense(400, 10)])
    assert synced.shard_count(BATCH) == 1  # its statistics span ranks
    assert Sequential([Flatten(), Softmax(axis=0)]).shard_count(BATCH) == 1
    assert Sequential([Flatten(), Softmax(axis=-2)]).shard_count(BATCH) == 1
    assert Sequential([Flatten(), Softmax()]).shard_count(BATCH) == 2


def test_a_container_without_a_replica_of_its_own_keeps_the_batch_whole(threads):
    threads(2)

    class Pair(Layer):  # shallow replicas would share these two layers' caches
        def __init__(self):
            super().__init__()
            self.inner = {"a": ReLU(), "b": ReLU()}

        def children(self):
            return self.inner

    assert not Pair().shardable
    assert Sequential([Pair(), Flatten()]).shard_count(BATCH) == 1
    assert Sequential([Residual([ReLU()]), Flatten()]).shard_count(BATCH) == 2


@pytest.mark.parametrize("n", [BATCH, 257])  # 257: shards of 128 and 129 images
def test_a_batch_norm_in_training_inside_an_eval_model_sums_over_the_shards(threads, n):
    x, _ = batch(n)
    means = []
    for count in (1, 2):
        threads(count)
        model = Sequential([Conv2D(1, 4, 3), BatchNorm2D(4), Flatten()], seed=0).eval()
        if count == 1:
            model.inference_chunk = len(x)  # one pass over the batch, as a split makes
        model["1"].train()  # a training layer: each shard runs in one pass, not in chunks
        model.forward(x)
        means.append(model["1"].buffers["running_mean"].copy())
        assert model["1"].buffers["num_batches_tracked"] == 1
    np.testing.assert_allclose(means[1], means[0], rtol=1e-5, atol=1e-7)


def test_two_threads_that_split_at_once_both_finish(threads):
    threads(3)
    x, y = batch()
    models = [norm_network(), norm_network()]
    errors = []

    def train(model):
        try:
            for _ in range(3):
                one_step(model, x, y)
        except BaseException as error:  # reported below
            errors.append(error)

    runners = [threading.Thread(target=train, args=(model,)) for model in models]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=60)
    assert not any(runner.is_alive() for runner in runners) and not errors
    for name, value in models[0].state_dict().items():
        np.testing.assert_array_equal(models[1].state_dict()[name], value, err_msg=name)


def test_shards_keep_the_callers_numpy_error_handling(threads):
    threads(2)
    seen = []

    def record():
        seen.append(np.geterr()["over"])

    with np.errstate(over="ignore"):
        parallel.run([record, record])
    assert seen == ["ignore", "ignore"]


def test_a_network_run_inside_a_shard_is_not_split_again(threads):
    threads(2)
    inner = network()
    counts = []

    class Wrapper(Layer):
        def forward(self, x):
            counts.append(inner.shard_count(len(x) * 2))
            return x

        def backward(self, dy):
            return dy

    Sequential([Wrapper(), Flatten()]).forward(np.zeros((BATCH, 1, 4, 4), np.float32))
    assert counts == [1, 1]
    with pytest.raises(RuntimeError, match="inside a shard"):
        parallel.run([lambda: parallel.set_num_threads(1), lambda: None])
    with pytest.raises(RuntimeError, match="inside a shard"):
        parallel.run([lambda: parallel.run([int]), lambda: None])
    assert parallel.run([lambda: 1, lambda: 2]) == [1, 2]  # and the next split runs


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_splits_with_threads_of_its_own(threads):
    threads(2)
    model = network()
    x, y = batch()
    one_step(model, x, y)  # the parent's pool exists, with a worker thread
    child = multiprocessing.get_context("fork").Process(target=one_step, args=(model, x, y))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0


class RefusesNaN(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        if np.isnan(x).any():
            raise ValueError("NaN in this shard")
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy


def test_a_failing_shard_releases_the_others_and_its_error_is_raised(threads):
    threads(2)
    model = Sequential(
        [Conv2D(1, 4, 3), RefusesNaN(), BatchNorm2D(4), Flatten(), Dense(4 * 10 * 10, 10)], seed=0
    )
    x, _ = batch()
    x[-1, 0, 0, 0] = np.nan  # the second shard fails while the first waits in batch norm
    with pytest.raises(ValueError, match="NaN in this shard"):
        model.forward(x)
    x[-1, 0, 0, 0], x[0, 0, 0, 0] = 0, np.nan  # now the first shard, on the calling thread
    with pytest.raises(ValueError, match="NaN in this shard"):
        model.forward(x)
    x[0, 0, 0, 0] = 0
    x[-1, 0, 0, 0] = 0  # and the next step runs
    assert model.forward(x).shape == (BATCH, 10)


def test_small_batches_and_one_thread_are_not_split(threads):
    model = network()
    threads(2)
    assert model.shard_count(2 * parallel.MIN_SHARD - 1) == 1
    threads(1)
    assert model.shard_count(10_000) == 1
    model.eval(keep_cache=True)  # attributions back-propagate through one pass
    threads(2)
    assert model.shard_count(10_000) == 1
    with pytest.raises(ValueError, match="at least 1"):
        parallel.set_num_threads(0)


def test_shards_cover_the_batch_in_order():
    x = np.arange(70)
    parts = parallel.shards(x, 3)
    assert sorted(len(p) for p in parts) == [23, 23, 24]
    np.testing.assert_array_equal(np.concatenate(parts), x)


def test_run_waits_for_every_task_and_raises_the_first_error(threads):
    threads(3)
    done = []

    def slow():
        threading.Event().wait(0.05)
        done.append(True)
        return 1

    def fail():
        raise RuntimeError("shard failed")

    with pytest.raises(RuntimeError, match="shard failed"):
        parallel.run([fail, slow, slow])
    assert len(done) == 2
    assert parallel.run([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]


def test_one_blas_thread_inside_and_restored_after():
    blas = openblas_threads()
    if blas is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    before = blas.get()
    with one_blas_thread():
        assert blas.get() == 1
    assert blas.get() == before


def test_a_model_copied_after_a_split_pass_leaves_its_shards_behind(threads):
    threads(2)
    model = norm_network()
    x, y = batch()
    model.forward(x)
    twin = copy.deepcopy(model)
    assert twin._split is None and model._split is not None
    loaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(loaded["conv1"].params["weight"], model["conv1"].params["weight"])
    one_step(twin, x, y)  # the copy trains on its own


@pytest.mark.parametrize(
    "value,threads,warning",
    [
        ("1", 1, None),
        ("0", None, "not a positive integer"),
        ("two", None, "not a positive integer"),
        ("100000", 100000, "more than the"),
    ],
)
def test_faltung_num_threads_is_read_and_checked(monkeypatch, value, threads, warning):
    monkeypatch.setenv("FALTUNG_NUM_THREADS", value)
    if warning is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert parallel._default_threads() == threads
        return
    with pytest.warns(UserWarning, match=warning):
        got = parallel._default_threads()
    if threads is not None:
        assert got == threads  # asked for explicitly: kept, with the warning
