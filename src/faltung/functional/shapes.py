"""Argument normalisation and geometry for the window kernels (convolution and pooling).

Every check of a kernel's arguments and of the input they must fit happens here, once:
the kernels call :func:`conv_geometry` and :func:`pool_geometry`, and the layers call the
same functions (through the kernels) instead of repeating the checks.

>>> conv_geometry((2, 3, 28, 28), (8, 3, 5, 5), stride=1, padding="same").out_hw
(28, 28)
>>> pool_geometry((2, 8, 28, 28), kernel_size=2).out_hw
(14, 14)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

IntPair = tuple[int, int]
# ((top, bottom), (left, right)) in pixels.
Padding2D = tuple[IntPair, IntPair]
Shape4D = tuple[int, int, int, int]

NO_PADDING: Padding2D = ((0, 0), (0, 0))


def pair(value: int | Sequence[int], name: str) -> IntPair:
    """Turn ``3`` or ``(3, 5)`` into ``(3, 5)``-style pairs of Python ints (from NumPy's
    integers too), rejecting anything else: floats, booleans, other lengths."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value  # already normalised: the hot path of every layer call
    if is_int(value):
        return (int(value), int(value))
    sequence = isinstance(value, Sequence) and not isinstance(value, str)
    if (sequence or (isinstance(value, np.ndarray) and value.ndim == 1)) and len(value) == 2:
        if is_int(value[0]) and is_int(value[1]):
            return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def is_int(value: object) -> bool:
    """An integer of Python's or NumPy's (``np.prod(shape)``), not a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def positive_pair(value: int | Sequence[int], name: str) -> IntPair:
    result = pair(value, name)
    if min(result) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


def resolve_padding(
    padding: int | Sequence[int] | str | Padding2D,
    kernel_size: IntPair,
    dilation: IntPair,
    stride: IntPair,
) -> Padding2D:
    """Explicit ((top, bottom), (left, right)) padding from PyTorch-style arguments.

    ``'same'`` keeps the spatial size for stride 1; like PyTorch it puts the odd pixel of an
    even receptive field at the bottom/right, and it is refused for strides above 1, where
    "same" would depend on the input size.
    An already explicit ((top, bottom), (left, right)) is returned as it is.
    """
    if (
        isinstance(padding, tuple)
        and len(padding) == 2
        and all(isinstance(side, tuple) for side in padding)
    ):
        return padding  # type: ignore[return-value]
    if isinstance(padding, str):
        if padding == "valid":
            return NO_PADDING
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
            return (
                (total[0] // 2, total[0] - total[0] // 2),
                (total[1] // 2, total[1] - total[1] // 2),
            )
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return (ph, ph), (pw, pw)


def output_size(size: int, kernel: int, stride: int, pad: IntPair, dilation: int = 1) -> int:
    """Floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1, as in PyTorch's docs."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def output_hw(
    input_hw: Sequence[int],
    kernel: IntPair,
    stride: IntPair,
    padding: Padding2D,
    dilation: IntPair = (1, 1),
) -> IntPair:
    return (
        output_size(input_hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        output_size(input_hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def check_features(input_shape: Sequence[int], in_features: int) -> None:
    """A dense layer's input must be (N, in_features) with N > 0."""
    if len(input_shape) != 2 or input_shape[1] != in_features:
        raise ValueError(f"expected {in_features} input features, got shape {tuple(input_shape)}")
    if input_shape[0] < 1:
        raise ValueError(f"empty batch, got shape {tuple(input_shape)}")


def padded_shape(shape: Shape4D, padding: Padding2D) -> Shape4D:
    n, c, h, w = shape
    return n, c, h + sum(padding[0]), w + sum(padding[1])


class ConvGeometry(NamedTuple):
    """Everything about one convolution's shapes, checked to fit together."""

    input_shape: Shape4D  # (N, C, H, W)
    weight_shape: Shape4D  # (O, C/groups, kh, kw)
    stride: IntPair
    padding: Padding2D
    dilation: IntPair
    groups: int
    out_hw: IntPair  # (Ho, Wo)

    @property
    def kernel(self) -> IntPair:
        return self.weight_shape[2], self.weight_shape[3]

    @property
    def rows(self) -> int:
        """N*Ho*Wo: one im2col row per output pixel."""
        return self.input_shape[0] * self.out_hw[0] * self.out_hw[1]

    @property
    def padded_shape(self) -> Shape4D:
        return padded_shape(self.input_shape, self.padding)


def conv_arguments(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int] | str | Padding2D,
    dilation: int | Sequence[int],
) -> tuple[IntPair, IntPair, Padding2D, IntPair]:
    """Validated (kernel, stride, padding, dilation), padding made explicit."""
    kernel = positive_pair(kernel_size, "kernel_size")
    stride_hw = positive_pair(stride, "stride")
    dilation_hw = positive_pair(dilation, "dilation")
    return kernel, stride_hw, resolve_padding(padding, kernel, dilation_hw, stride_hw), dilation_hw


def conv_geometry(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str | Padding2D = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> ConvGeometry:
    """Check that an (N, C, H, W) input fits an (O, C/groups, kh, kw) weight; output size."""
    if len(input_shape) != 4:
        raise ValueError(f"expected input (N, C, H, W), got shape {tuple(input_shape)}")
    if len(weight_shape) != 4:
        raise ValueError(f"expected weight (O, C/groups, kh, kw), got {tuple(weight_shape)}")
    kernel, stride_hw, pads, dilation_hw = conv_arguments(
        weight_shape[2:], stride, padding, dilation
    )
    out_channels, cin_per_group = weight_shape[:2]
    if groups < 1 or out_channels % groups:
        raise ValueError(f"groups={groups} must divide the {out_channels} output channels")
    n, c, h, w = input_shape
    if n < 1:
        raise ValueError(f"empty batch, got shape {tuple(input_shape)}")
    if c != cin_per_group * groups:
        raise ValueError(
            f"expected {cin_per_group * groups} input channels, got shape {tuple(input_shape)} "
            f"(weight {tuple(weight_shape)}, groups={groups})"
        )
    out = output_hw((h, w), kernel, stride_hw, pads, dilation_hw)
    if min(out) < 1:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation_hw} does not fit the padded input "
            f"{(h + sum(pads[0]), w + sum(pads[1]))} (input shape {tuple(input_shape)}, "
            f"padding {pads})"
        )
    return ConvGeometry(
        tuple(input_shape), tuple(weight_shape), stride_hw, pads, dilation_hw, groups, out
    )


class PoolGeometry(NamedTuple):
    """Everything about one pooling's shapes, checked to fit together."""

    input_shape: Shape4D
    kernel: IntPair
    stride: IntPair
    padding: Padding2D
    out_hw: IntPair

    @property
    def offsets(self) -> list[IntPair]:
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    @property
    def overlapping(self) -> bool:
        """Windows share input pixels, so their gradients must be added, not assigned."""
        return self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]

    @property
    def padded_shape(self) -> Shape4D:
        return padded_shape(self.input_shape, self.padding)

    @property
    def tiles_exactly(self) -> bool:
        """Windows cover every input pixel exactly once (no overlap, gap or padding)."""
        return (
            self.stride == self.kernel
            and self.padding == NO_PADDING
            and all(o * k == s for o, k, s in zip(self.out_hw, self.kernel, self.input_shape[2:]))
        )


def pool_arguments(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
) -> tuple[IntPair, IntPair, IntPair]:
    """Validated (kernel, stride, padding) pairs; stride defaults to the kernel size.

    Padding is symmetric and at most half the kernel, as in PyTorch (a window must never
    see only padding).
    """
    kernel = positive_pair(kernel_size, "kernel_size")
    stride_hw = kernel if stride is None else positive_pair(stride, "stride")
    pads = pair(padding, "padding")
    if min(pads) < 0 or pads[0] * 2 > kernel[0] or pads[1] * 2 > kernel[1]:
        raise ValueError(
            f"pool padding must be between 0 and half the kernel {kernel}, got {padding!r}"
        )
    return kernel, stride_hw, pads


def pool_geometry(
    input_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> PoolGeometry:
    """Check pooling arguments against an (N, C, H, W) input; output size."""
    kernel, stride_hw, (ph, pw) = pool_arguments(kernel_size, stride, padding)
    if len(input_shape) != 4:
        raise ValueError(f"pooling expects (N, C, H, W) input, got shape {tuple(input_shape)}")
    pads = ((ph, ph), (pw, pw))
    out = output_hw(input_shape[2:], kernel, stride_hw, pads)
    if min(out) < 1:
        raise ValueError(
            f"pooling window {kernel} does not fit the input with padding {(ph, pw)} "
            f"(input shape {tuple(input_shape)})"
        )
    return PoolGeometry(tuple(input_shape), kernel, stride_hw, pads, out)
