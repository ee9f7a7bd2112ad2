"""Arrays handed to fit, evaluate and predict: checked, converted to the engine's float32, and saved as the
.npy files a run configuration names (the trace embeds them)."""

import os

import numpy as np

from ._errors import DataError

X_FILE, Y_FILE = "x.npy", "y.npy"


def features(x, name="x", sample_shape=None):
    """`x` as a C-contiguous float32 array [rows, ...sample shape]. No copy when it is one already;
    other real dtypes are converted (a copy)."""
    if x is None:
        raise DataError(f"{name}: an array is required")
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise DataError(f"{name}: dtype {a.dtype} is not supported: give real numbers (float32 is used as is, "
                        f"other float and integer dtypes are converted to float32)")
    if a.ndim < 2:
        raise DataError(f"{name}: expected an array of shape (rows, features...), got shape {a.shape}"
                        + (_rows_of(a.size, name, sample_shape) if a.ndim == 1 else ""))
    if a.shape[0] == 0:
        raise DataError(f"{name}: has no rows (shape {a.shape})")
    if 0 in a.shape[1:]:
        raise DataError(f"{name}: has no features (shape {a.shape}): each row needs at least one value")
    if sample_shape is not None and tuple(a.shape[1:]) != tuple(sample_shape):
        raise DataError(f"{name}: samples of shape {tuple(a.shape[1:])}, but the model was trained on samples of "
                        f"shape {tuple(sample_shape)}")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, and is named below
        f = np.ascontiguousarray(a, dtype=np.float32)
    _finite(f, a, name)
    return f


def _rows_of(size, name, sample_shape):
    """How to make rows of a 1-D array of `size` values: by the samples the model was trained on, when it has
    been; for fit, both readings of it (one feature per row, or one sample)."""
    if sample_shape is None:
        return (f" (for one feature per row, reshape it with {name}.reshape(-1, 1); for one sample of {size} "
                f"features, with {name}.reshape(1, -1))")
    sample = tuple(int(d) for d in sample_shape)
    per = int(np.prod(sample))
    dims = ", ".join(str(d) for d in sample)
    if sample == (1,):
        return f" (the model was trained on one feature per row: reshape it with {name}.reshape(-1, 1))"
    if size == per:
        one = f"{name}.reshape(1, -1) or {name}[None]" if len(sample) == 1 else f"{name}.reshape(1, {dims})"
        return f" (the model takes samples of shape {sample}: for one sample, give {one})"
    if size % per == 0:
        return (f" (the model takes samples of shape {sample}: for {size // per} samples, give "
                f"{name}.reshape(-1, {dims}))")
    return (f" (the model takes samples of shape {sample}, {per} values each, and its {size} values are no whole "
            f"number of samples)")


def labels(y, rows, name="y", loss=None):
    """`y` as float32 labels, one per row: shape (rows,) or (rows, 1). `loss` (the compiled loss's name)
    picks the advice for labels of another shape."""
    if y is None:
        raise DataError(f"{name}: labels are required")
    a = np.asarray(y)
    if a.dtype.kind not in "fiub":
        raise DataError(f"{name}: dtype {a.dtype} is not supported: give class indices or numeric targets")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        if a.size == rows:
            # One label per row, in another shape: a row vector, or extra axes of length 1.
            raise DataError(f"{name}: expected one label per row, shape (rows,) or (rows, 1), got shape {a.shape}, "
                            f"which holds one value per row: give {name}.reshape(-1)")
        if loss == "mse":
            raise DataError(f"{name}: expected one target per row, shape (rows,) or (rows, 1), got shape {a.shape}: "
                            f"with loss='mse' the engine fits one target per row (a regression with several "
                            f"targets is not supported)")
        if a.ndim == 2 and a.shape[0] == rows and a.shape[1] == 2 and loss == "binary_crossentropy":
            raise DataError(f"{name}: expected one label per row, shape (rows,) or (rows, 1), got shape {a.shape} "
                            f"(one-hot rows of two classes: give their class indices, {name}.argmax(axis=1), the 0 "
                            f"and 1 that binary_crossentropy takes)")
        raise DataError(f"{name}: expected one label per row, shape (rows,) or (rows, 1), got shape {a.shape} "
                        f"(one-hot rows: give their class indices, {name}.argmax(axis=1), with "
                        f"loss='sparse_categorical_crossentropy')")
    if a.shape[0] != rows:
        raise DataError(f"x and {name}: x has {rows} rows, {name} has {a.shape[0]}")
    f = np.ascontiguousarray(a, dtype=np.float32)
    _finite(f, a, name)
    if loss == "sparse_categorical_crossentropy" and a.dtype.kind == "f" and a.dtype.itemsize > 4:
        # A fraction that float32 rounds to a whole number (0.99999999) would be trained on as that class.
        with np.errstate(invalid="ignore"):
            fraction = np.flatnonzero((a != np.floor(a)) & (f == np.floor(f)))
        if fraction.size:
            i = fraction[0]
            raise DataError(f"{name}: the label of row {i} (counting from 0) is {a[i]!r}, which float32 (the type "
                            f"class indices are trained as) rounds to {int(f[i])}: {loss} needs class indices, "
                            f"integers from 0")
    if loss == "sparse_categorical_crossentropy" and a.dtype.kind in "iuf":
        # Class indices are trained as float32: one it cannot hold (2**24 + 1) would be read as another.
        for i in np.flatnonzero(np.abs(a.astype(np.float64)) > 2**24):
            if float(a[i]) == np.floor(float(a[i])) and int(f[i]) != int(a[i]):
                raise DataError(f"{name}: the label of row {i} (counting from 0) is {a[i]}, which float32 (the "
                                f"type class indices are trained as) holds as {int(f[i])}: {loss} needs class "
                                f"indices, integers from 0 below the model's outputs")
    return f


def _label(v):
    """A float32 label in the fewest digits that read back as it: 0.9999999, never a rounded 1."""
    return np.format_float_positional(np.float32(v), trim="-")


def check_labels(y, loss, outputs, name="y"):
    """Labels the loss can take: class indices below the model's outputs, or values in [0, 1]."""
    if loss == "sparse_categorical_crossentropy":
        bad = np.flatnonzero((y != np.floor(y)) | (y < 0))
        if bad.size:
            raise DataError(f"{name}: the label of row {bad[0]} (counting from 0) is {_label(y[bad[0]])}: {loss} "
                            f"needs class indices, integers from 0 to {outputs - 1} (the model has {outputs} "
                            f"outputs)")
        bad = np.flatnonzero(y >= outputs)
        if bad.size and outputs == 1:
            raise DataError(f"{name}: the label of row {bad[0]} (counting from 0) is {_label(y[bad[0]])}: {loss} "
                            f"needs one output per class, and the model has 1 output (for two classes, 0 and 1: "
                            f"loss='binary_crossentropy' with a sigmoid output, or 2 softmax outputs)")
        if bad.size:
            raise DataError(f"{name}: the label of row {bad[0]} (counting from 0) is {_label(y[bad[0]])}: {loss} "
                            f"needs class indices from 0 to {outputs - 1} (the model has {outputs} outputs)")
    elif loss == "binary_crossentropy":
        bad = np.flatnonzero((y < 0) | (y > 1))
        if bad.size:
            raise DataError(f"{name}: the label of row {bad[0]} (counting from 0) is {_label(y[bad[0]])}: {loss} "
                            f"needs labels in [0, 1]")


def save(folder, x, y):
    """Writes x.npy and y.npy into `folder`, as numpy.save writes them."""
    np.save(os.path.join(folder, X_FILE), x, allow_pickle=False)
    np.save(os.path.join(folder, Y_FILE), y, allow_pickle=False)


def _finite(f, original, name):
    ok = np.isfinite(f)
    if ok.all():
        return
    where = np.unravel_index(int(np.argmin(ok)), f.shape)
    row = f"row {where[0]}" + (f", column {where[1]}" if f.ndim == 2 else
                               f", element {tuple(int(i) for i in where[1:])}" if f.ndim > 2 else "")
    value = original[where]
    why = ("too large for float32" if np.isfinite(value) else f"{value}")
    raise DataError(f"{name}: {row}: {why}: every value must be a finite number (trainrr does not impute: "
                    f"fill or drop such rows first)")
