"""Batch norm folded into the convolution before it, in eval mode: same outputs, and taken
only where it may be (no caches kept, fast kernels, the batch norm directly after)."""

from __future__ import annotations

import numpy as np
import pytest

import faltung as fl
from faltung.functional import conv2d_forward
from faltung.functional.norm import batch_norm_inference_forward, fold_into_conv
from faltung.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Flatten,
    ReLU,
    Residual,
    SyncBatchNorm2D,
    fusion,
)


def _statistics(rng, channels, affine=True):
    """Running statistics and affine parameters far from their initial values."""
    mean = rng.standard_normal(channels) * 2
    var = rng.random(channels) * 3 + 0.1
    gamma = rng.standard_normal(channels) if affine else None
    beta = rng.standard_normal(channels) if affine else None
    return mean, var, gamma, beta


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_the_folded_convolution_is_the_convolution_then_batch_norm(has_bias, affine, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 7, 6))
    weight = rng.standard_normal((6, 4 // groups, 3, 3))
    bias = rng.standard_normal(6) if has_bias else None
    mean, var, gamma, beta = _statistics(rng, 6, affine)
    y, _ = conv2d_forward(x, weight, bias, 1, 1, groups=groups)
    want, _ = batch_norm_inference_forward(y, mean, var, gamma, beta, 1e-5)
    folded_weight, folded_bias = fold_into_conv(weight, bias, mean, var, gamma, beta, 1e-5)
    got, _ = conv2d_forward(x, folded_weight, folded_bias, 1, 1, groups=groups)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_folded_parameters_keep_the_weights_dtype():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    mean, var, gamma, beta = (a.astype(np.float32) for a in _statistics(rng, 5))
    w, b = fold_into_conv(weight, None, mean, var, gamma, beta, 1e-5)
    assert w.dtype == b.dtype == np.float32


def _network(rng):
    body = [
        ("conv1", Conv2D(4, 4, 3, padding=1, bias=False)),
        ("bn1", BatchNorm2D(4)),
        ("relu", ReLU()),
        ("conv2", Conv2D(4, 4, 3, padding=1)),
        ("bn2", BatchNorm2D(4)),
    ]
    model = fl.Sequential(
        [
            ("conv", Conv2D(1, 4, 3, padding=1)),
            ("bn", BatchNorm2D(4)),
            ("relu", ReLU()),
            ("block", Residual(body)),
            ("flatten", Flatten()),
            ("fc", Dense(4 * 6 * 6, 3)),
        ],
        seed=0,
    )
    for _, layer in model.named_layers():
        if isinstance(layer, BatchNorm2D):
            mean, var, gamma, beta = _statistics(rng, 4)
            layer.buffers["running_mean"][:] = mean
            layer.buffers["running_var"][:] = var
            layer.params["weight"][:], layer.params["bias"][:] = gamma, beta
    return model


def _norm_calls(model, monkeypatch) -> list[str]:
    """Names of the batch norms whose own forward runs, recorded per call. The spy sits on
    the class: a forward set on an instance would itself keep the pair from folding."""
    names = {id(layer): name for name, layer in model.named_layers()}
    calls = []
    original = BatchNorm2D.forward

    def spy(self, x):
        calls.append(names[id(self)])
        return original(self, x)

    monkeypatch.setattr(BatchNorm2D, "forward", spy)
    return calls


def test_eval_mode_folds_every_conv_batch_norm_pair_and_agrees(monkeypatch):
    model = _network(np.random.default_rng(2)).astype(np.float64)
    x = np.random.default_rng(3).standard_normal((5, 1, 6, 6))
    want = model.eval(keep_cache=True).forward(x)  # caches kept: every layer runs alone
    calls = _norm_calls(model, monkeypatch)
    got = model.eval().forward(x)
    assert calls == []  # all three batch norms folded, in the model and in the block
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("setting", ["training", "keep_cache", "reference"])
def test_no_folding_where_each_layer_must_run(monkeypatch, setting):
    model = _network(np.random.default_rng(4))
    if setting == "training":
        model.train()
    else:
        model.eval(keep_cache=setting == "keep_cache")
    if setting == "reference":
        model.use_kernels("reference")
    calls = _norm_calls(model, monkeypatch)
    model.forward(np.random.default_rng(5).standard_normal((4, 1, 6, 6)).astype(np.float32))
    assert calls == ["bn", "block.body.bn1", "block.body.bn2"]


X32 = np.zeros((1, 2, 5, 5), np.float32)


def test_only_a_batch_norm_directly_after_a_convolution_folds():
    conv, relu, norm = Conv2D(2, 3, 3), ReLU(), BatchNorm2D(3)
    for layer in (conv, relu, norm):
        layer.eval()
    assert fusion.folds(conv, norm, X32)
    assert fusion.folds(conv, SyncBatchNorm2D(3).eval(), X32)
    assert not fusion.folds(relu, norm, X32)
    assert not fusion.folds(conv, relu, X32)
    assert not fusion.folds(conv, BatchNorm2D(4).eval(), X32)  # its own error is the one to see


class _OwnNorm(BatchNorm2D):
    def forward(self, x):
        return super().forward(x) + 1


def test_subclasses_replaced_forwards_and_mixed_dtypes_run_as_written():
    conv, norm = Conv2D(2, 3, 3).eval(), BatchNorm2D(3).eval()
    assert not fusion.folds(conv, _OwnNorm(3).eval(), X32)
    hooked = BatchNorm2D(3).eval()
    hooked.forward = lambda x: x  # an instance's own forward, as a hook sets it
    assert not fusion.folds(conv, hooked, X32)
    assert not fusion.folds(conv, norm, X32.astype(np.float64))  # float64 into float32 weights
    assert not fusion.folds(conv, BatchNorm2D(3, dtype=np.float64).eval(), X32)


def test_a_folded_batch_norm_keeps_no_stale_training_cache():
    model = _network(np.random.default_rng(8))
    x = np.random.default_rng(9).standard_normal((4, 1, 6, 6)).astype(np.float32)
    model.train().forward(x)  # every batch norm caches its batch
    model.eval().forward(x)
    norms = [layer for _, layer in model.named_layers() if isinstance(layer, BatchNorm2D)]
    assert len(norms) == 3 and all(norm._cache is None for norm in norms)
    with pytest.raises(ValueError, match="without a forward pass"):
        model["block"].body.backward(np.ones((4, 4, 6, 6), np.float32))


def test_forward_each_and_trace_run_each_layer_on_its_own(monkeypatch):
    model = _network(np.random.default_rng(6)).eval()
    x = np.random.default_rng(7).standard_normal((2, 1, 6, 6)).astype(np.float32)
    calls = _norm_calls(model, monkeypatch)
    names = [name for name, _ in model.forward_each(x)]
    assert names[:2] == ["conv", "bn"] and calls == ["bn"]  # the model's own layers
    inside = [name for name, _, _ in model["block"].body.trace(np.ones((2, 4, 6, 6), np.float32))]
    assert inside[:2] == ["conv1", "bn1"] and calls[1:] == ["block.body.bn1", "block.body.bn2"]
