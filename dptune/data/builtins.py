"""Built-in datasets that need no download: sklearn's digits and breast cancer, and a synthetic generator.

They go through the same preparation as an upload (fixed encodings, the split by each
row's hash), with their public schema declared (column kinds and class lists are part of
the published datasets), so nothing about them is read from the rows.
"""

from __future__ import annotations

import math

import numpy as np

from dptune.data.dataset import Dataset
from dptune.data.labels import table_row_digests
from dptune.data.prepare import PreparedData, SplitOptions, prepare_arrays, prepare_table
from dptune.data.tabular import PublicSchema
from dptune.errors import DataError
from dptune.spec.limits import MAX_EXAMPLES, MAX_SYNTHETIC_VALUES, short_repr

BUILTIN_DATASETS: dict[str, str] = {
    "digits": "sklearn's handwritten digits: 1,797 grayscale 8x8x1 images in [0, 1], 10 classes (the default)",
    "breast_cancer": "sklearn's breast cancer (Wisconsin): 569 rows, 30 numeric features (signed log), 2 classes",
    "synthetic": "a generated classification problem for scale and fairness tests (n_examples, n_features, "
    "n_classes, separability, image_shape, minority_share)",
}
DEFAULT_BUILTIN = "digits"

MAX_ROTATED_FEATURES = 1024
"""The most features the synthetic minority's rotation takes (an n_features² matrix)."""

SYNTHETIC_DEFAULTS = {"n_examples": 10_000, "n_features": 20, "n_classes": 2, "separability": 1.0, "image_shape": None,
                      "minority_share": None}


def prepare_builtin(name: str, *, seed: int = 0, validation_fraction: float = 0.2, **params) -> PreparedData:
    """A built-in dataset with its preparation report; `seed` fixes the split (and synthetic data).

    digits and breast_cancer take no parameters. synthetic takes n_examples (total, before
    the split), n_features, n_classes, separability (sklearn's class_sep: larger is easier)
    and image_shape (height, width, channels) to shape the features as images (its product
    replaces n_features); minority_share (in (0, 0.5)) adds a sensitive attribute `group`: that
    share of the rows, drawn at random, is the "minority", whose features are seen through a
    fixed random rotation (same labels, another view), so that a model fitted to the majority
    serves it worse (a disparate-impact test bed; default: no groups).
    """
    if name not in BUILTIN_DATASETS:
        raise DataError(f"there is no built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}")
    if name != "synthetic" and params:
        raise DataError(f"the built-in dataset {name!r} takes no parameters, got {', '.join(sorted(params))}")
    options = SplitOptions(validation_fraction=validation_fraction, seed=seed)
    if name == "digits":
        return _digits(options)
    if name == "breast_cancer":
        return _breast_cancer(options)
    return _synthetic(options, **params)


def builtin_dataset(name: str, *, seed: int = 0, validation_fraction: float = 0.2, **params) -> Dataset:
    """The built-in dataset `name` (see BUILTIN_DATASETS), split with `seed`."""
    return prepare_builtin(name, seed=seed, validation_fraction=validation_fraction, **params).dataset


def _digits(options: SplitOptions) -> PreparedData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    return prepare_arrays(
        x,
        bunch.target,
        name="digits",
        source_name="sklearn digits",
        source_format="builtin",
        n_first=len(x),
        has_test=False,
        options=options,
        encoding="8x8 grayscale images, pixel values 0-16 divided by 16 (the dataset's fixed range)",
        classes=tuple(str(digit) for digit in range(10)),
        notes=["8x8 grayscale images, pixel values 0-16 divided by 16"],
    )


def _breast_cancer(options: SplitOptions) -> PreparedData:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    labels = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    schema = PublicSchema(numeric={column: None for column in bunch.data.columns}, classes=("benign", "malignant"))
    return prepare_table(
        bunch.data,
        labels,
        name="breast_cancer",
        source_name="sklearn breast cancer",
        source_format="builtin",
        n_first=len(labels),
        has_test=False,
        options=options,
        row_digests=table_row_digests(bunch.data.assign(diagnosis=labels)),
        label_column="diagnosis",
        schema=schema,
    )


def _synthetic(
    options: SplitOptions,
    n_examples: int = SYNTHETIC_DEFAULTS["n_examples"],
    n_features: int = SYNTHETIC_DEFAULTS["n_features"],
    n_classes: int = SYNTHETIC_DEFAULTS["n_classes"],
    separability: float = SYNTHETIC_DEFAULTS["separability"],
    image_shape: tuple[int, int, int] | None = SYNTHETIC_DEFAULTS["image_shape"],
    minority_share: float | None = SYNTHETIC_DEFAULTS["minority_share"],
    **unknown,
) -> PreparedData:
    from sklearn.datasets import make_classification

    if unknown:
        raise DataError(
            f"unknown parameter(s) of the synthetic dataset: {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(SYNTHETIC_DEFAULTS)}"
        )
    if image_shape is not None:
        if not (isinstance(image_shape, (list, tuple)) and len(image_shape) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in image_shape)):
            raise DataError(f"image_shape must be (height, width, channels), got {short_repr(image_shape)}")
        shape = tuple(image_shape)
        n_features = math.prod(shape)
    _check_int("n_classes", n_classes, 2, 1000)
    _check_int("n_features", n_features, 1, 1_000_000)
    _check_int("n_examples", n_examples, 2 * n_classes, MAX_EXAMPLES)
    if n_examples * n_features > MAX_SYNTHETIC_VALUES:  # checked before sklearn allocates them (float64)
        raise DataError(f"the synthetic dataset of {n_examples:,} examples x {n_features:,} features has "
                        f"{n_examples * n_features:,} values, over dptune's limit of {MAX_SYNTHETIC_VALUES:,}")
    if not (isinstance(separability, (int, float)) and separability > 0 and math.isfinite(separability)):
        raise DataError(f"separability must be a number > 0, got {separability!r}")
    if minority_share is not None:
        if not (isinstance(minority_share, (int, float)) and not isinstance(minority_share, bool)
                and 0 < minority_share < 0.5):
            raise DataError(f"minority_share must be a number in (0, 0.5), got {short_repr(minority_share)}")
        if n_features > MAX_ROTATED_FEATURES:
            raise DataError(f"minority_share needs at most {MAX_ROTATED_FEATURES:,} features (its rotation is a "
                            f"square matrix of that side), got {n_features:,}")
    informative = max(math.ceil(math.log2(n_classes)) + 1, min(n_features, 10))
    if informative > n_features:
        raise DataError(f"{n_classes} classes need at least {informative} features, got n_features={n_features}")
    x, y = make_classification(
        n_samples=n_examples,
        n_features=n_features,
        n_informative=informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=float(separability),
        random_state=options.seed,
    )
    groups = None
    if minority_share is not None:
        x, groups = _rotated_minority(x, float(minority_share), options.seed)
    x = x.astype(np.float32)
    name = f"synthetic-{n_examples}x{n_features}-c{n_classes}-s{separability:g}"
    if groups is not None:
        name += f"-m{minority_share:g}"
    if image_shape is not None:
        x = x.reshape(n_examples, *shape)
        name = f"synthetic-{n_examples}x{'x'.join(map(str, shape))}-c{n_classes}-s{separability:g}"
    return prepare_arrays(
        x,
        y,
        name=name,
        source_name="synthetic",
        source_format="builtin",
        n_first=n_examples,
        has_test=False,
        options=options,
        encoding="generated features used as they are",
        classes=tuple(str(label) for label in range(n_classes)),
        sensitive=groups,
        sensitive_column=None if groups is None else "group",
        notes=[f"sklearn make_classification, class_sep={separability:g}, {informative} informative features"]
        + ([] if groups is None else [f"a {minority_share:.0%} minority (group) sees the features rotated"]),
    )


def _rotated_minority(x: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, group per row): a `share` of the rows, drawn with `seed`, become "minority"
    and their feature vectors are multiplied by one random orthogonal matrix."""
    rng = np.random.default_rng([seed, 1])
    flat = x.reshape(len(x), -1)
    rotation, _ = np.linalg.qr(rng.normal(size=(flat.shape[1], flat.shape[1])))
    minority = rng.random(len(x)) < share
    flat = np.where(minority[:, None], flat @ rotation, flat)
    return flat.reshape(x.shape), np.where(minority, "minority", "majority")


def _check_int(name: str, value, low: int, high: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise DataError(f"{name} must be an integer between {low:,} and {high:,}, got {short_repr(value)}")
