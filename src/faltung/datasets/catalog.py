"""Which files make up each dataset, where they are published, and their checksums."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataFile:
    name: str  # standard file name, without .gz
    md5: str  # MD5 of the decompressed bytes: what every correct copy shares
    gz_md5: str | None  # MD5 of the .gz file the mirrors publish (for reference)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    files: dict[str, DataFile]  # role -> file; roles: train_images, train_labels, ...
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    debian_package: str | None = None  # installs the files in /usr/share/datasets/<name>


ROLES = ("train_images", "train_labels", "test_images", "test_labels")

MNIST = DatasetInfo(
    "mnist",
    {
        "train_images": DataFile(
            "train-images-idx3-ubyte",
            "6bbc9ace898e44ae57da46a324031adb",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        "train_labels": DataFile(
            "train-labels-idx1-ubyte",
            "a25bea736e30d166cdddb491f175f624",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        "test_images": DataFile(
            "t10k-images-idx3-ubyte",
            "2646ac647ad5339dbf082846283269ea",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        "test_labels": DataFile(
            "t10k-labels-idx1-ubyte",
            "27ae3e4e09519cfbb04c329615203637",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    },
    (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    tuple(str(digit) for digit in range(10)),
)

# Zalando publishes the MD5 of the .gz files; those of the decompressed files are the ones
# torchvision's FashionMNIST lists. Debian's package recompresses the files (no name in the gzip
# header), so only the decompressed content identifies a correct copy.
FASHION_MNIST = DatasetInfo(
    "fashion-mnist",
    {
        "train_images": DataFile(
            "train-images-idx3-ubyte",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        "train_labels": DataFile(
            "train-labels-idx1-ubyte",
            "9018921c3c673c538a1fc5bad174d6f9",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        "test_images": DataFile(
            "t10k-images-idx3-ubyte",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        "test_labels": DataFile(
            "t10k-labels-idx1-ubyte",
            "15d484375f8d13e6eb1aabb0c3f46965",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    },
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "dataset-fashion-mnist",
)

DATASETS = {info.name: info for info in (MNIST, FASHION_MNIST)}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}"
        ) from None
