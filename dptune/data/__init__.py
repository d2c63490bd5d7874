"""Data: bytes or a built-in name -> a prepared `Dataset` (arrays, fingerprint, what preparation read).

`load` is the entry point (`load_dataset`, `builtin_dataset`) and `upload` shows a file
before it is prepared (`describe_upload`); `sources` reads bytes safely, `text` reads text
tables (encoding, separator, header row), `tabular`, `images` and `arrays` parse formats,
`diagnose` lists a table's problems at once and warns about identifiers and leaks, `labels`
encodes classes and splits rows, `prepare` turns parsed data into a `Dataset` (`dataset`).
Nothing here imports TensorFlow, Optuna or the accountant.
"""

from dptune.data.builtins import BUILTIN_DATASETS, DEFAULT_BUILTIN, builtin_dataset, prepare_builtin
from dptune.data.dataset import DEFAULT_WORKSPACE, Dataset
from dptune.data.diagnose import ColumnProblem, ColumnWarning, TableProblems, column_warnings
from dptune.data.encoding import HASH_BUCKETS
from dptune.data.load import (
    check_enough_examples,
    load_dataset,
    resolve_dataset,
    store,
)
from dptune.data.prepare import DataReport, PreparedData
from dptune.data.sources import DEFAULT_LIMITS, Limits
from dptune.data.tabular import PublicSchema
from dptune.data.upload import UploadSummary, describe_upload

__all__ = [
    "BUILTIN_DATASETS", "DEFAULT_BUILTIN", "DEFAULT_LIMITS", "DEFAULT_WORKSPACE", "HASH_BUCKETS", "ColumnProblem",
    "ColumnWarning", "DataReport", "Dataset", "Limits", "PreparedData", "PublicSchema", "TableProblems",
    "UploadSummary", "builtin_dataset", "check_enough_examples", "column_warnings", "describe_upload", "load_dataset",
    "prepare_builtin", "resolve_dataset", "store",
]
