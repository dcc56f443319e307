"""Readers for the standard on-disk dataset formats: MNIST idx, CIFAR pickles, .npz, image folders.

Every reader returns ``((train_images, train_labels), (test_images, test_labels))`` with images
(N, C, H, W), uint8 or float in [0, 1], and labels int64 (N,). Readers only read, never write
into the data folder.
Any problem with the files is a :class:`DataError` naming the file and what is wrong, so a user
can fix the folder instead of decoding a traceback from numpy, gzip or pickle.
"""

from advkit.data.readers.cifar import (
    CifarUnpickler,
    RefusedGlobalError,
    cifar100_class_names,
    has_cifar,
    load_cifar10,
    load_cifar100,
    read_cifar_batch,
    read_cifar_pickle,
)
from advkit.data.readers.common import ArrayPair, Splits, check_labels, find_named_npz
from advkit.data.readers.idx import (
    has_idx_dataset,
    load_idx_dataset,
    locate_idx,
    read_idx,
    read_idx_pair,
)
from advkit.data.readers.image_folder import (
    ImageFolderIndex,
    decode_image,
    has_image_folder,
    image_folder_classes,
    index_image_folder,
    load_image_folder,
)
from advkit.data.readers.npz import find_npz, has_npz, load_npz_dataset, read_npz

__all__ = [
    "ArrayPair", "CifarUnpickler", "ImageFolderIndex", "RefusedGlobalError", "Splits",
    "check_labels", "cifar100_class_names", "decode_image", "find_named_npz", "find_npz",
    "has_cifar", "has_idx_dataset", "has_image_folder", "has_npz", "image_folder_classes",
    "index_image_folder", "load_cifar10", "load_cifar100",
    "load_idx_dataset", "load_image_folder", "load_npz_dataset", "locate_idx", "read_cifar_batch",
    "read_cifar_pickle", "read_idx", "read_idx_pair", "read_npz",
]  # fmt: skip
