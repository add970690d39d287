"""Pure array kernels: forward functions return ``(output, cache)``, backward functions take
the upstream gradient and that cache. No state, no parameters: those live in ``faltung.layers``.
"""

from .activations import (
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
)
from .conv import conv2d_backward, conv2d_forward, sliding_windows
from .losses import mean_squared_error, one_hot, softmax_cross_entropy
from .norm import batch_norm_backward, batch_norm_forward, batch_norm_inference
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    lp_pool2d_backward,
    lp_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_inference",
    "conv2d_backward",
    "conv2d_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "lp_pool2d_backward",
    "lp_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mean_squared_error",
    "one_hot",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "sliding_windows",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "tanh",
    "tanh_backward",
]
