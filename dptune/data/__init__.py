"""Data: bytes or a built-in name -> a prepared `Dataset` (arrays, fingerprint, what preparation read).

`load` is the entry point (`load_dataset`, `describe_upload`, `builtin_dataset`); `sources`
reads bytes safely, `tabular`, `images` and `arrays` parse formats, `labels` encodes classes
and splits rows, `prepare` turns parsed data into a `Dataset` (`dataset`). Nothing here
imports TensorFlow, Optuna or the accountant.
"""

from dptune.data.builtins import BUILTIN_DATASETS, DEFAULT_BUILTIN, builtin_dataset, prepare_builtin
from dptune.data.dataset import DEFAULT_WORKSPACE, Dataset
from dptune.data.encoding import HASH_BUCKETS
from dptune.data.load import (
    UploadSummary,
    check_enough_examples,
    describe_upload,
    load_dataset,
    resolve_dataset,
    store,
)
from dptune.data.prepare import DataReport, PreparedData
from dptune.data.sources import DEFAULT_LIMITS, Limits
from dptune.data.tabular import PublicSchema

__all__ = [
    "BUILTIN_DATASETS", "DEFAULT_BUILTIN", "DEFAULT_LIMITS", "DEFAULT_WORKSPACE", "HASH_BUCKETS", "DataReport",
    "Dataset", "Limits", "PreparedData", "PublicSchema", "UploadSummary", "builtin_dataset", "check_enough_examples",
    "describe_upload", "load_dataset", "prepare_builtin", "resolve_dataset", "store",
]
