"""SyncBatchNorm: on ranks simulated by threads, the whole batch's statistics; its gradient
checked numerically against the function of every rank's input together."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.layers import BatchNorm1D, BatchNorm2D, SyncBatchNorm1D, SyncBatchNorm2D

from ..ranks import run_ranks

CASES = [(BatchNorm2D, SyncBatchNorm2D, (5, 3, 3, 2)), (BatchNorm1D, SyncBatchNorm1D, (7, 4))]


def split(array, size):
    return np.array_split(array, size)


def sync_run(sync_cls, plain, x, dy, size, dtype):
    """Forward and backward of the synchronised twin of ``plain`` on ``size`` ranks."""

    def work(comm):
        layer = sync_cls.from_batch_norm(plain, process_group=comm).astype(dtype)
        y = layer.forward(split(x, size)[comm.rank])
        dx = layer.backward(split(dy, size)[comm.rank])
        return y, dx, layer.grads, layer.buffers

    results = run_ranks(size, work)
    y = np.concatenate([r[0] for r in results])
    dx = np.concatenate([r[1] for r in results])
    grads = {k: sum(r[2][k] for r in results) for k in results[0][2]}
    return y, dx, grads, [r[3] for r in results]


@pytest.mark.parametrize(("plain_cls", "sync_cls", "shape"), CASES)
@pytest.mark.parametrize("size", [2, 3])
def test_sync_batch_norm_over_ranks_is_batch_norm_over_the_whole_batch(
    plain_cls, sync_cls, shape, size
):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    plain = plain_cls(shape[1])
    plain.params["weight"] = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    y, dx, grads, buffers = sync_run(sync_cls, plain, x, dy, size, np.float32)
    reference = plain_cls(shape[1])
    reference.params = {k: v.copy() for k, v in plain.params.items()}
    np.testing.assert_allclose(y, reference.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, reference.backward(dy), rtol=1e-4, atol=1e-5)
    for key in ("weight", "bias"):
        np.testing.assert_allclose(grads[key], reference.grads[key], rtol=1e-4, atol=1e-5)
    for rank_buffers in buffers:  # every rank keeps the same running statistics
        for key in ("running_mean", "running_var"):
            np.testing.assert_allclose(
                rank_buffers[key], reference.buffers[key], rtol=1e-5, atol=1e-6
            )


@pytest.mark.parametrize(("plain_cls", "sync_cls", "shape"), CASES)
def test_sync_batch_norm_gradient_check(plain_cls, sync_cls, shape):
    """Central differences in float64 of f(x, gamma, beta) = sum over ranks of sum(w * y)."""
    size, eps = 2, 1e-6
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 2 + 0.5
    w = rng.standard_normal(shape)
    plain = plain_cls(shape[1], dtype=np.float64)
    plain.params["weight"] = rng.uniform(0.5, 1.5, shape[1])
    plain.params["bias"] = rng.standard_normal(shape[1])

    def f(x, params):
        layer = plain_cls(shape[1], dtype=np.float64)
        layer.params = params
        y, *_ = sync_run(sync_cls, layer, x, w, size, np.float64)
        return float((w * y).sum())

    _, dx, grads, _ = sync_run(sync_cls, plain, x, w, size, np.float64)
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (f(up, plain.params) - f(down, plain.params)) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)
    for key in ("weight", "bias"):
        numeric = np.zeros(shape[1])
        for c in range(shape[1]):
            up = {k: v.copy() for k, v in plain.params.items()}
            down = {k: v.copy() for k, v in plain.params.items()}
            up[key][c] += eps
            down[key][c] -= eps
            numeric[c] = (f(x, up) - f(x, down)) / (2 * eps)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8)


def test_one_process_sync_batch_norm_is_batch_norm_and_saves_as_itself():
    from faltung import Sequential

    x = np.random.default_rng(2).standard_normal((6, 3, 4, 4)).astype(np.float32)
    plain = BatchNorm2D(3)
    sync = SyncBatchNorm2D.from_batch_norm(plain)
    np.testing.assert_allclose(sync.forward(x), plain.forward(x), rtol=1e-5, atol=1e-6)
    model = Sequential([("bn", sync)])
    assert model.config()[0]["type"] == "SyncBatchNorm2D"
    rebuilt = Sequential.from_config(model.config())
    assert isinstance(rebuilt["bn"], SyncBatchNorm2D)
    with pytest.raises(ValueError, match="more than one value per channel"):
        SyncBatchNorm1D(3).forward(np.ones((1, 3), np.float32))
