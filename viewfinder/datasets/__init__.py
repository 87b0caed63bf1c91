"""PaddleX dataset formats (ClsDataset, MLClsDataset, ShiTuRecDataset): load, check, convert, split."""
from ..errors import DatasetError
from .check import check_dataset
from .convert import convert_dataset
from .formats import CLS, DATASET_TYPES, ML, REC, SPLITS, Dataset, Sample, load_dataset, normalize_type
from .split import split_dataset

__all__ = [
    "CLS",
    "DATASET_TYPES",
    "ML",
    "REC",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "Sample",
    "check_dataset",
    "convert_dataset",
    "load_dataset",
    "normalize_type",
    "split_dataset",
]
