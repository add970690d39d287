"""Conv2D: holds the weight and bias; the maths is in faltung.functional (conv, reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..functional.shapes import conv_arguments, output_hw, pair
from ..init import as_generator, get_initializer
from .base import Layer


class Conv2D(Layer):
    """2-D convolution over (N, C, H, W) input, with PyTorch's arguments and shapes.

    weight: (out_channels, in_channels // groups, kh, kw); bias: (out_channels,).
    ``padding`` is an int, a pair, ``'same'`` (stride 1) or ``'valid'``. The article's
    convolution is the valid case: a W x W image and an H x H kernel give W - H + 1.

    >>> conv = Conv2D(1, 20, kernel_size=5, rng=0)
    >>> conv(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 20, 24, 24)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        weight_init: str = "he_normal",
        rng: int | np.random.Generator | None = None,
        dtype: np.dtype = np.float32,
    ) -> None:
        super().__init__()
        in_channels = self._positive_int(in_channels, "in_channels")
        out_channels = self._positive_int(out_channels, "out_channels")
        groups = self._positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise self._fail(
                f"groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        try:
            self.kernel_size, self.stride, self._pads, self.dilation = conv_arguments(
                kernel_size, stride, padding, dilation
            )
        except ValueError as error:
            raise self._fail(str(error)) from None
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.has_bias = bias
        self.weight_init = weight_init
        self._init = get_initializer(weight_init)
        self.dtype = np.dtype(dtype)
        self.reset_parameters(as_generator(rng))

    def reset_parameters(self, rng: np.random.Generator) -> None:
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.params["weight"] = self._init(shape, rng, self.dtype)
        if self.has_bias:
            self.params["bias"] = np.zeros(self.out_channels, self.dtype)

    def output_hw(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        return output_hw(input_hw, self.kernel_size, self.stride, self._pads, self.dilation)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._conv_forward(x, self.params["weight"], self.params.get("bias"))

    def _conv_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None
    ) -> np.ndarray:
        """This layer's convolution (stride, padding, ...) with a weight and bias of its
        parameters' shapes; ``layers.fusion`` passes ones with a batch norm folded in."""
        return self._run(
            self.kernels.conv2d_forward,
            x,
            weight,
            bias,
            self.stride,
            self._pads,
            self.dilation,
            self.groups,
            need_cache=self.caching,  # inference keeps nothing, and may work differently
        )

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        dx, dweight, dbias = self.kernels.conv2d_backward(dy, self._cached(), self.needs_input_grad)
        self._store_grads(dweight, dbias)
        return dx

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.has_bias,
            "weight_init": self.weight_init,
        }
