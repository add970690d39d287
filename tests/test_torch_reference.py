"""Our layers against torch.nn on random inputs, forward and backward (skips without torch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
tF = torch.nn.functional

from faltung.layers import (  # noqa: E402
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    LpPool2D,
    MaxPool2D,
    Sigmoid,
    Softmax,
)
from faltung.losses import SoftmaxCrossEntropy  # noqa: E402
from faltung.optim import SGD, Adam, AdamW, RMSProp  # noqa: E402


def compare(ours, theirs, shape, seed=0, rtol=1e-4, atol=1e-5):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    y = ours.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=rtol, atol=atol)
    return x, dy


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stride": 2, "padding": 1},
        {"padding": "same", "dilation": 2},
        {"groups": 2, "stride": (2, 1), "padding": (0, 2)},
    ],
)
def test_conv2d(kwargs):
    ours = Conv2D(4, 6, (3, 2), rng=0, **kwargs)
    ours.params["bias"][:] = np.arange(6) * 0.1
    theirs = nn.Conv2d(4, 6, (3, 2), **kwargs)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["weight"]))
        theirs.bias.copy_(torch.tensor(ours.params["bias"]))
    compare(ours, theirs, (3, 4, 9, 8))
    np.testing.assert_allclose(
        ours.grads["weight"], theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(ours.grads["bias"], theirs.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("args", [(2,), (3, 2, 1), (3, 1), ((2, 3), (1, 2), (1, 1))])
def test_max_and_avg_pool(args):
    compare(MaxPool2D(*args), nn.MaxPool2d(*args), (2, 3, 9, 10))
    compare(AvgPool2D(*args), nn.AvgPool2d(*args), (2, 3, 9, 10))


@pytest.mark.parametrize("p", [2, 3])
def test_lp_pool_is_torch_lppool_scaled_by_the_window_mean(p):
    # torch: (sum x^p)^(1/p); the article: (mean x^p)^(1/p) = torch / (k*k)^(1/p).
    x = np.abs(np.random.default_rng(0).standard_normal((2, 3, 8, 8))).astype(np.float32) + 0.1
    ours = LpPool2D(p, 2).forward(x)
    theirs = tF.lp_pool2d(torch.tensor(x), p, 2).numpy() / 4 ** (1 / p)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_dense_and_activations():
    ours = Dense(7, 5, rng=0)
    theirs = nn.Linear(7, 5)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["weight"]))
        theirs.bias.copy_(torch.tensor(ours.params["bias"]))
    compare(ours, theirs, (4, 7))
    np.testing.assert_allclose(
        ours.grads["weight"], theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-5
    )
    compare(Sigmoid(), torch.sigmoid, (4, 7))
    compare(Softmax(), lambda t: torch.softmax(t, -1), (4, 7))


@pytest.mark.parametrize(
    "ours,theirs,shape",
    [
        (BatchNorm2D(3), nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (BatchNorm1D(6), nn.BatchNorm1d(6), (8, 6)),
    ],
)
def test_batchnorm_training_and_running_stats(ours, theirs, shape):
    compare(ours, theirs, shape)
    np.testing.assert_allclose(
        ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(ours.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-5)
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5
    )


def test_batchnorm_momentum_none_is_the_cumulative_average():
    ours, theirs = BatchNorm2D(3, momentum=None), nn.BatchNorm2d(3, momentum=None)
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal((4, 3, 5, 5)).astype(np.float32) * seed
        ours(x)
        theirs(torch.tensor(x))
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(ours.buffers[key], getattr(theirs, key).numpy(), rtol=1e-5)
    assert int(ours.buffers["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 4


@pytest.mark.parametrize("kernels", ["fast", "reference"])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_entropy(kernels, masked):
    """Against PyTorch; a class masked out with a logit of -inf adds nothing (0 log 0 = 0),
    where the product 0 * -inf would make the loss NaN."""
    logits = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32) * 5
    labels = np.array([0, 9, 3, 3, 2, 7])
    if masked:
        logits[[0, 1, 4], [5, 0, 9]] = -np.inf
    loss = SoftmaxCrossEntropy(kernels=kernels)
    with np.errstate(all="raise"):
        value = loss(logits, labels)
    lt = torch.tensor(logits, requires_grad=True)
    ref = tF.cross_entropy(lt, torch.tensor(labels))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(loss.backward(), lt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "ours,theirs,kwargs",
    [
        (
            SGD,
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True},
        ),
        (Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01}),
        (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
        (RMSProp, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    ],
)
def test_optimizers_follow_torch_for_several_steps(ours, theirs, kwargs):
    from faltung import Sequential

    model = Sequential([Dense(4, 3, rng=0)])
    weight = torch.tensor(model[0].params["weight"].copy(), requires_grad=True)
    opt, topt = ours(model.parameters(), **kwargs), theirs([weight], **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(5):
        grad = rng.standard_normal((3, 4)).astype(np.float32)
        model[0].grads["weight"] = grad
        weight.grad = torch.tensor(grad)
        opt.step()
        topt.step()
    np.testing.assert_allclose(
        model[0].params["weight"], weight.detach().numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_residual_basic_block(stride):
    """basic_block against the same block in torch: conv-bn-relu-conv-bn plus a shortcut."""
    from faltung.presets import basic_block

    cout = 4 if stride == 1 else 6
    ours = basic_block(4, cout, stride)
    ours.reset_parameters(np.random.default_rng(0))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(4, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip
            self.shortcut = (
                nn.Sequential(nn.Conv2d(4, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1
                else nn.Identity()
            )

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    theirs = Block()
    torch_names = {"body.conv1": "body.0", "body.bn1": "body.1", "body.conv2": "body.3",
                   "body.bn2": "body.4", "shortcut.conv": "shortcut.0", "shortcut.bn": "shortcut.1"}  # fmt: skip
    with torch.no_grad():
        for name, layer in ours.named_layers():
            for key, value in layer.params.items():
                theirs.get_parameter(f"{torch_names[name]}.{key}").copy_(torch.tensor(value))
    compare(ours, theirs, (3, 4, 7, 6))
    grads = {
        f"{name}.{key}": g for name, layer in ours.named_layers() for key, g in layer.grads.items()
    }
    for name, g in grads.items():
        layer, key = name.rsplit(".", 1)
        expected = theirs.get_parameter(f"{torch_names[layer]}.{key}").grad.numpy()
        np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-4, err_msg=name)
