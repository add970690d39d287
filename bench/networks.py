"""The benchmarked networks: each preset as defined, and as the textbooks write it; and
PyTorch's own MNIST example, a network as users write them.

The presets pool before each ReLU (``conv -> pool -> ReLU``); PyTorch's tutorials and the
article write ``conv -> ReLU -> pool``. Both orders compute the same function; the
benchmark measures both, so that neither hides the other's cost. The resnet has no
pooling and the example is measured as its authors wrote it: each has one order.
"""

from __future__ import annotations

from faltung.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from faltung.model import Sequential
from faltung.presets import PRESETS

ORDERS = ("preset", "textbook")
# The network of pytorch/examples' mnist/main.py: 3 x 3 convolutions of 32 and 64
# channels, no padding, one pooling, and a 9,216 -> 128 dense layer (1.2 M parameters).
EXAMPLE = "pytorch-example"
NETWORKS = (*sorted(PRESETS), EXAMPLE)


def orders(network: str) -> tuple[str, ...]:
    """The layer orders measured for ``network``: both for the article and lenet."""
    return ORDERS[:1] if network in ("resnet", EXAMPLE) else ORDERS


def pytorch_example(seed: int = 0) -> Sequential:
    """PyTorch's MNIST example network, layer for layer (its log-softmax is the loss's)."""
    return Sequential(
        [
            ("conv1", Conv2D(1, 32, 3)), ("relu1", ReLU()),
            ("conv2", Conv2D(32, 64, 3)), ("relu2", ReLU()),
            ("pool", MaxPool2D(2)), ("dropout1", Dropout(0.25)), ("flatten", Flatten()),
            ("fc1", Dense(9216, 128)), ("relu3", ReLU()), ("dropout2", Dropout(0.5)),
            ("fc2", Dense(128, 10)),
        ],
        seed=seed,
    )  # fmt: skip


def numpy_network(network: str, order: str = "preset", seed: int = 0) -> Sequential:
    """A preset's network, or the example's; with ``order='textbook'`` every ReLU that
    follows a max pooling moves in front of it (the same layers and weights, names kept)."""
    if order not in ORDERS:
        raise ValueError(f"unknown layer order {order!r}; choose one of {ORDERS}")
    if order not in orders(network):
        raise ValueError(f"{network} is measured in one layer order, {ORDERS[0]!r}")
    if network == EXAMPLE:
        return pytorch_example(seed)
    model = PRESETS[network].build(seed)
    if order == "preset":
        return model
    items = list(model.layers.items())
    for i in range(1, len(items)):
        if isinstance(items[i][1], ReLU) and isinstance(items[i - 1][1], MaxPool2D):
            items[i - 1], items[i] = items[i], items[i - 1]
    return Sequential(items)
