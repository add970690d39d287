"""faltung: convolutional neural networks in NumPy alone.

>>> import numpy as np, faltung as fl
>>> model = fl.Sequential([fl.layers.Conv2D(1, 8, 3), fl.layers.ReLU(),
...                        fl.layers.MaxPool2D(2), fl.layers.Flatten(),
...                        fl.layers.Dense(8 * 13 * 13, 10)], seed=0)
>>> model(np.zeros((4, 1, 28, 28), np.float32)).shape
(4, 10)
"""

__version__ = "0.1.0"

from ._threads import share_cores_under_mpi

share_cores_under_mpi()  # before NumPy loads its BLAS

from . import functional, init, layers, losses, optim, schedules  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .model import Sequential  # noqa: E402
from .parallel import get_num_threads, set_num_threads  # noqa: E402

__all__ = [
    "Sequential",
    "__version__",
    "functional",
    "get_num_threads",
    "gradcheck",
    "init",
    "layers",
    "losses",
    "optim",
    "schedules",
    "set_num_threads",
]
