"""Datasets: MNIST and Fashion-MNIST from IDX files, verified and cached; the user's own
image folders, CSV and .npz files; seeded subsets; preprocessing that travels with a model."""

from .catalog import DATASETS, dataset_info
from .errors import DatasetError
from .idx import read_idx, write_idx
from .mnist import ImageDataset, load_dataset, to_float
from .preprocess import ImageArray, Preprocessing
from .sources import (
    DEFAULT_TEST_SPLIT,
    check_training_labels,
    is_own_data,
    load_data,
    stratified_split,
)
from .subsets import fingerprint, subset_indices

__all__ = [
    "DATASETS",
    "DEFAULT_TEST_SPLIT",
    "DatasetError",
    "ImageArray",
    "ImageDataset",
    "Preprocessing",
    "check_training_labels",
    "dataset_info",
    "fingerprint",
    "is_own_data",
    "load_data",
    "load_dataset",
    "read_idx",
    "stratified_split",
    "subset_indices",
    "to_float",
    "write_idx",
]
