"""Datasets: MNIST and Fashion-MNIST from IDX files, verified and cached; seeded subsets."""

from .catalog import DATASETS, dataset_info
from .errors import DatasetError
from .idx import read_idx, write_idx
from .mnist import ImageDataset, load_dataset, to_float
from .subsets import subset_indices

__all__ = [
    "DATASETS",
    "DatasetError",
    "ImageDataset",
    "dataset_info",
    "load_dataset",
    "read_idx",
    "subset_indices",
    "to_float",
    "write_idx",
]
