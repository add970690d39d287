"""What a network computes: every layer's output, its filters, one convolution sum."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..functional.shapes import resolve_padding
from ..layers import Conv2D
from ..model import Sequential


def activations(model: Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output in eval mode, keyed by the model's layer names, in order.

    ``x`` is one image (C, H, W) or a batch (N, C, H, W); outputs keep the same batching.
    """
    x = as_input(model, np.asarray(x))
    single = x.ndim == 3
    out = x[None] if single else x
    outputs: dict[str, np.ndarray] = {}
    with model.evaluating():
        for name, y in model.forward_each(out):
            outputs[name] = y[0] if single else y
    return outputs


def as_input(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Images as the model's float type: uint8 pixels scaled to [0, 1] (as every loader of
    faltung's does), floats as they are."""
    if x.dtype == np.uint8:
        return x.astype(model.dtype) / model.dtype.type(255)
    return x if x.dtype.kind == "f" else x.astype(model.dtype)


def probabilities(model: Sequential, scores: np.ndarray) -> np.ndarray:
    """Class probabilities from the model's outputs (N, K) (``Sequential.probabilities``)."""
    return model.probabilities(scores)


def predict_probabilities(model: Sequential, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``probabilities`` of a batch, computed in eval mode and in batches."""
    return model.predict_proba(x, batch_size)


def conv_layers(model: Sequential) -> list[str]:
    """Names of the model's convolutions, in order."""
    return [name for name, layer in model.layers.items() if isinstance(layer, Conv2D)]


def filters(model: Sequential, layer: str | None = None) -> np.ndarray:
    """A convolution's weights (out_channels, in_channels // groups, kh, kw), a copy.

    Each [o, i] slice is the kh x kw image that output channel o lays over input channel i.
    ``layer`` defaults to the first convolution.
    """
    return _conv(model, layer)[1].params["weight"].copy()


def _conv(model: Sequential, layer: str | None) -> tuple[str, Conv2D]:
    names = conv_layers(model)
    if not names:
        raise ValueError("the model has no convolution")
    name = names[0] if layer is None else layer
    if name not in names:
        raise ValueError(f"{name!r} is not a convolution; the model's are {', '.join(names)}")
    return name, model.layers[name]


@dataclass
class ConvSum:
    """One output value of a convolution, written out as the article's sum.

    value = bias + sum over (input channel c, a, b) of weight[c, a, b] * patch[c, a, b],
    where patch is the (zero-padded, dilated) window of the layer's input under the kernel.
    """

    layer: str
    channel: int
    row: int
    col: int
    patch: np.ndarray  # (in_channels // groups, kh, kw)
    weight: np.ndarray  # same shape
    bias: float
    input_channels: range  # which channels of the layer's input the patch comes from
    top: int  # window position in the (unpadded) input; may be negative at a padded edge
    left: int

    @property
    def products(self) -> np.ndarray:
        return self.weight * self.patch

    @property
    def value(self) -> float:
        return float(self.products.sum(dtype=np.float64) + self.bias)


def conv_sum(
    model: Sequential, image: np.ndarray, layer: str, channel: int, row: int, col: int
) -> ConvSum:
    """The receptive-field sum behind ``activations(model, image)[layer][channel, row, col]``."""
    name, conv = _conv(model, layer)
    names = list(model.layers)
    index = names.index(name)
    x = as_input(model, np.asarray(image))  # uint8 pixels in [0, 1], as activations has them
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {x.shape}")
    source = x if index == 0 else activations(model, x)[names[index - 1]]
    source = source.astype(conv.params["weight"].dtype, copy=False)
    out_h, out_w = conv.output_hw(source.shape[1:])
    if not (0 <= channel < conv.out_channels and 0 <= row < out_h and 0 <= col < out_w):
        raise ValueError(
            f"{name}: no output ({channel}, {row}, {col}) in {conv.out_channels}x{out_h}x{out_w}"
        )
    (pad_top, pad_bottom), (pad_left, pad_right) = resolve_padding(
        conv.padding, conv.kernel_size, conv.dilation, conv.stride
    )
    padded = np.pad(source, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))
    per_group = conv.in_channels // conv.groups
    group = channel // (conv.out_channels // conv.groups)
    channels = range(group * per_group, (group + 1) * per_group)
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    top, left = row * sh, col * sw
    patch = padded[channels.start : channels.stop, top : top + dh * (kh - 1) + 1 : dh,
                   left : left + dw * (kw - 1) + 1 : dw]  # fmt: skip
    bias = conv.params.get("bias")
    return ConvSum(
        layer=name,
        channel=channel,
        row=row,
        col=col,
        patch=patch.copy(),
        weight=conv.params["weight"][channel].copy(),
        bias=0.0 if bias is None else float(bias[channel]),
        input_channels=channels,
        top=top - pad_top,
        left=left - pad_left,
    )


def to_uint8(array: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Scale ``array`` linearly from [low, high] (default its own range) to 0..255."""
    array = np.asarray(array, dtype=np.float32)
    low = float(array.min()) if low is None else low
    high = float(array.max()) if high is None else high
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return np.zeros(array.shape, np.uint8)
    scaled = (array - low) * (255.0 / span)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
