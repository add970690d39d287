"""Slow, obviously-correct loop implementations: the oracle for the fast kernels."""

from __future__ import annotations

import numpy as np


def conv2d_naive(x, weight, bias, stride, padding, dilation, groups):
    """Direct definition: one output value at a time. padding is ((top, bottom), (left, right))."""
    n, c, h, w = x.shape
    out_c, cg, kh, kw = weight.shape
    (pt, pb), (pl, pr) = padding
    xp = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=np.float64)
    xp[:, :, pt : pt + h, pl : pl + w] = x
    out_h = (h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    og = out_c // groups
    y = np.zeros((n, out_c, out_h, out_w))
    for b in range(n):
        for o in range(out_c):
            g = o // og
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if bias is None else float(bias[o])
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                total += (
                                    weight[o, ci, u, v]
                                    * xp[
                                        b,
                                        g * cg + ci,
                                        i * stride[0] + u * dilation[0],
                                        j * stride[1] + v * dilation[1],
                                    ]
                                )
                    y[b, o, i, j] = total
    return y


def pool2d_naive(x, kernel, stride, padding, reduce, pad_value):
    n, c, h, w = x.shape
    ph, pw = padding
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=np.float64)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    out_h = (h + 2 * ph - kernel[0]) // stride[0] + 1
    out_w = (w + 2 * pw - kernel[1]) // stride[1] + 1
    y = np.zeros((n, c, out_h, out_w))
    for b in range(n):
        for ch in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    window = xp[
                        b,
                        ch,
                        i * stride[0] : i * stride[0] + kernel[0],
                        j * stride[1] : j * stride[1] + kernel[1],
                    ]
                    y[b, ch, i, j] = reduce(window)
    return y
