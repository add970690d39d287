"""Residual: a container layer, y = body(x) + shortcut(x), seen by everything that walks a model."""

from __future__ import annotations

import numpy as np
import pytest

from faltung import Sequential, gradcheck
from faltung.io import load_model, save_model
from faltung.layers import (
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Identity,
    ReLU,
    Residual,
)
from faltung.presets import basic_block


def small_net(seed: int = 0) -> Sequential:
    return Sequential(
        [
            ("block1", basic_block(2, 4, stride=2)),
            ("relu1", ReLU()),
            ("block2", basic_block(4, 4)),
            ("pool", GlobalAvgPool2D()),
            ("fc", Dense(4, 3)),
        ],
        seed=seed,
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_block_gradcheck(stride):
    block = basic_block(3, 3 if stride == 1 else 5, stride)
    result = gradcheck(block, np.random.default_rng(0).standard_normal((3, 3, 6, 5)))
    assert result.ok, result
    names = set(result.errors)
    assert "body.conv1.weight" in names and "body.bn2.bias" in names
    assert ("shortcut.conv.weight" in names) == (stride == 2)


def test_identity_shortcut_adds_the_input():
    block = Residual([("conv", Conv2D(2, 2, 3, padding=1, rng=0))])
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(block(x), block.body(x) + x, rtol=1e-6)
    dy = np.ones_like(x)
    dx = block.backward(dy)
    conv_only = Conv2D(2, 2, 3, padding=1, rng=0)
    conv_only(x)
    np.testing.assert_allclose(dx, conv_only.backward(dy) + 1, rtol=1e-5)
    assert dy.sum() == dy.size  # the incoming gradient is not written into


def test_network_gradcheck_names_nested_parameters():
    result = gradcheck(small_net(), np.random.default_rng(1).standard_normal((4, 2, 6, 6)))
    assert result.ok, result
    assert "block1.shortcut.bn.weight" in result.errors and "fc.bias" in result.errors


def test_state_dict_round_trip_and_rebuild(tmp_path):
    model = small_net(seed=3)
    state = model.state_dict()
    assert "block1.body.conv1.weight" in state and "block1.shortcut.conv.weight" in state
    assert "block2.body.bn2.running_var" in state and "block2.shortcut.conv.weight" not in state
    names = [p.name for p in model.parameters()]
    assert len(names) == len(set(names)) and names[0] == "block1.body.conv1.weight"
    x = np.random.default_rng(0).standard_normal((5, 2, 8, 8)).astype(np.float32)
    model.train()
    model(x)  # moves the running statistics
    model.eval()
    expected = model(x)
    rebuilt = Sequential.from_config(model.config())
    rebuilt.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(rebuilt.eval()(x), expected)
    path = save_model(model, tmp_path / "model.npz")
    np.testing.assert_array_equal(load_model(path).model(x), expected)
    with pytest.raises(ValueError, match=r"block1\.body\.conv1\.weight: shape"):
        bad = dict(state, **{"block1.body.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)})
        model.load_state_dict(bad)


def test_initialize_train_eval_kernels_and_dtype_reach_the_children():
    model = small_net(seed=0)
    same = small_net(seed=0)
    other = small_net(seed=1)
    for a, b in zip(model.parameters(), same.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
    assert any(
        not np.array_equal(a.value, c.value)
        for a, c in zip(model.parameters(), other.parameters())
        if "conv" in a.name
    )
    inner = dict(model.named_layers())["block1.body.bn1"]
    model.eval(keep_cache=True)
    assert not inner.training and inner.keep_cache
    model.train()
    assert inner.training and not inner.keep_cache
    model.use_kernels("reference")
    assert inner.kernels.name == "reference"
    model.astype(np.float64)
    assert dict(model.named_layers())["block2.body.conv2"].params["weight"].dtype == np.float64


def test_reference_kernels_compute_the_same_block():
    x = np.random.default_rng(0).standard_normal((3, 2, 7, 7)).astype(np.float32)
    fast, ref = small_net(0), small_net(0).use_kernels("reference")
    np.testing.assert_allclose(fast(x), ref(x), rtol=1e-4, atol=1e-5)


def test_shape_mismatch_names_the_block():
    model = Sequential([("block", Residual([("conv", Conv2D(2, 4, 3, padding=1))]))], seed=0)
    with pytest.raises(
        ValueError, match=r"block \(Residual\): body gives \(4, 5, 5\) but the input"
    ):
        model(np.zeros((1, 2, 5, 5), np.float32))


def test_summary_lists_the_layers_inside():
    text = small_net().summary((2, 8, 8))
    assert "block1.shortcut.conv" in text and "block2.body.conv2" in text
    assert f"Total parameters: {small_net().num_parameters():,}" in text


def test_summaries_and_flops_reach_blocks_nested_in_blocks():
    from faltung.summary import count_flops

    inner = Residual([("conv", Conv2D(4, 4, 3, padding=1))])
    model = Sequential([("outer", Residual([("inner", inner), ("relu", ReLU())]))], seed=0)
    flops = 2 * 4 * 4 * 9 * 8 * 8  # multiply-adds of the one convolution, twice
    assert count_flops(model, (4, 8, 8)) == {"outer.body.inner.body.conv": flops}
    assert "outer.body.inner.body.conv" in model.summary((4, 8, 8))


def test_dropout_inside_a_block_resumes_exactly(tmp_path):
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.optim import SGD
    from faltung.train import Trainer

    def build():
        model = Sequential(
            [
                (
                    "block",
                    Residual([("conv", Conv2D(1, 1, 3, padding=1)), ("drop", Dropout(0.5, rng=1))]),
                ),
                ("pool", GlobalAvgPool2D()),
                ("fc", Dense(1, 2)),
            ],
            seed=0,
        )
        return model

    rng = np.random.default_rng(0)
    data = (rng.standard_normal((12, 1, 4, 4)).astype(np.float32), rng.integers(0, 2, 12))

    def trainer(model, epochs):
        return Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1), data,
                       epochs=epochs, batch_size=4, checkpoint_path=tmp_path / "c.npz")  # fmt: skip

    whole = build()
    trainer(whole, 2).fit()
    half = build()
    trainer(half, 1).fit()
    resumed = build()
    t = trainer(resumed, 2)
    t.load_checkpoint(tmp_path / "c.npz")
    t.fit()
    for p, q in zip(whole.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.value, q.value)


def test_a_block_as_the_first_layer_computes_no_input_gradient():
    """Like a first convolution, a first residual block skips its input gradient (both
    branches' first layers), and its parameters' gradients are unchanged by that."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)

    def block():
        return Residual(
            [("conv1", Conv2D(3, 4, 3, padding=1)), ("relu", ReLU()),
             ("conv2", Conv2D(4, 4, 3, padding=1))],
            shortcut=[("conv", Conv2D(3, 4, 1))],
        )  # fmt: skip

    first = Sequential([("block", block()), ("flatten", Flatten())], seed=0)
    inner = Sequential([("id", Identity()), ("block", block()), ("flatten", Flatten())], seed=0)
    assert first["block"].body.layers["conv1"].needs_input_grad is False
    assert first["block"].shortcut.layers["conv"].needs_input_grad is False
    assert first["block"].body.layers["conv2"].needs_input_grad is True
    dy = rng.standard_normal((2, 4 * 8 * 8)).astype(np.float32)
    outputs = [model.forward(x) for model in (first, inner)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert first.backward(dy) is None and inner.backward(dy) is not None
    for p, q in zip(first.parameters(), inner.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=p.name)
