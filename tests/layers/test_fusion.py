"""Batch norm folded into the convolution before it, in eval mode: same outputs, and taken
only where it may be (no caches kept, fast kernels, the batch norm directly after)."""

from __future__ import annotations

import numpy as np
import pytest

import faltung as fl
from faltung.functional import conv2d_forward
from faltung.functional.norm import batch_norm_inference_forward, fold_into_conv
from faltung.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU, Residual, fusion


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
    """Names of the batch norms whose own forward runs, recorded per call."""
    calls = []
    for name, layer in model.named_layers():
        if isinstance(layer, BatchNorm2D):
            original = layer.forward

            def spy(x, name=name, original=original):
                calls.append(name)
                return original(x)

            monkeypatch.setattr(layer, "forward", spy)
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


def test_only_a_batch_norm_directly_after_a_convolution_folds():
    conv, relu, norm = Conv2D(2, 3, 3), ReLU(), BatchNorm2D(3)
    for layer in (conv, relu, norm):
        layer.eval()
    assert fusion.folds(conv, norm)
    assert not fusion.folds(relu, norm)
    assert not fusion.folds(conv, relu)
    assert not fusion.folds(conv, BatchNorm2D(4).eval())  # its own error is the one to see


def test_forward_each_still_shows_every_layers_output():
    model = _network(np.random.default_rng(6)).eval()
    x = np.random.default_rng(7).standard_normal((2, 1, 6, 6)).astype(np.float32)
    names = [name for name, _ in model.forward_each(x)]
    assert names[:2] == ["conv", "bn"]
