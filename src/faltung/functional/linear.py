"""The fully connected layer's maths: y = x W^T + b, with PyTorch's weight shape (out, in)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .shapes import check_features


class LinearCache(NamedTuple):
    x: np.ndarray  # (N, in_features): the input, for dW
    weight: np.ndarray  # (out_features, in_features): the weight used, for dx
    has_bias: bool


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    """x (N, in), weight (out, in), bias (out,) -> y (N, out)."""
    check_features(x.shape, weight.shape[1])
    # (W x^T)^T rather than x W^T: the same product, in the orientation BLAS runs fastest
    # when the weight, the big operand, is on the left in its own layout.
    y = (weight @ x.T).T
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(
    dy: np.ndarray, cache: LinearCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dweight, dbias): dx = dY W, dW = dY^T X, db = the column sums of dY."""
    x, weight, has_bias = cache
    # A fresh array, not matmul(out=...): the out= form leaves BLAS's fast path. One image
    # makes dW an outer product, which NumPy's matmul (inner dimension 1) runs without BLAS
    # at a quarter of a broadcast multiply's speed; the values are the same products.
    dweight = dy.T * x if len(dy) == 1 else dy.T @ x
    dbias = np.ones(len(dy), dy.dtype) @ dy if has_bias else None
    dx = (weight.T @ dy.T).T if need_input_grad else None
    return dx, dweight, dbias
