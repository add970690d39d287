"""Datasets: MNIST and Fashion-MNIST from IDX files, verified, cached, batched."""

from .catalog import DATASETS, dataset_info
from .errors import DatasetError
from .idx import read_idx, write_idx
from .mnist import ImageDataset, iterate_minibatches, load_dataset, to_float

__all__ = [
    "DATASETS",
    "DatasetError",
    "ImageDataset",
    "dataset_info",
    "iterate_minibatches",
    "load_dataset",
    "read_idx",
    "to_float",
    "write_idx",
]
