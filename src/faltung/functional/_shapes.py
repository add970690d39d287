"""Argument normalisation and output-size arithmetic shared by the window kernels."""

from __future__ import annotations

from collections.abc import Sequence

IntPair = tuple[int, int]
# ((top, bottom), (left, right)) in pixels.
Padding2D = tuple[IntPair, IntPair]


def pair(value: int | Sequence[int], name: str) -> IntPair:
    """Turn ``3`` or ``(3, 5)`` into ``(3, 5)``-style pairs, rejecting anything else."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value  # already normalised: the hot path of every layer call
    if isinstance(value, (int,)) and not isinstance(value, bool):
        result = (int(value), int(value))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        result = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return result


def positive_pair(value: int | Sequence[int], name: str) -> IntPair:
    result = pair(value, name)
    if min(result) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


def resolve_padding(
    padding: int | Sequence[int] | str,
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
        return padding
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
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


def is_symmetric(padding: Padding2D) -> bool:
    return padding[0][0] == padding[0][1] and padding[1][0] == padding[1][1]


def pool_geometry_args(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
) -> tuple[IntPair, IntPair, IntPair]:
    """Validated (kernel, stride, padding) pairs for a pooling layer; stride defaults to kernel."""
    kernel = positive_pair(kernel_size, "kernel_size")
    stride_hw = kernel if stride is None else positive_pair(stride, "stride")
    pads = pair(padding, "padding")
    if min(pads) < 0 or pads[0] * 2 > kernel[0] or pads[1] * 2 > kernel[1]:
        raise ValueError(
            f"pool padding must be between 0 and half the kernel {kernel}, got {padding!r}"
        )
    return kernel, stride_hw, pads
