"""Losses, with Keras' names (keras.losses): compile(loss="binary_crossentropy") or an object when the
model's output is logits (from_logits=True)."""

from . import _check

_NAMES = ("binary_crossentropy", "sparse_categorical_crossentropy", "mse")
# Keras' other spellings of the same losses.
_ALIASES = {"mean_squared_error": "mse", "MSE": "mse", "MeanSquaredError": "mse",
            "bce": "binary_crossentropy", "BCE": "binary_crossentropy", "BinaryCrossentropy": "binary_crossentropy",
            "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy"}


class Loss:
    """A loss, as compile(loss=...) takes it: its name, and whether the model's outputs are logits."""

    name = None

    def __init__(self, from_logits=False, **kwargs):
        owner = f"losses.{type(self).__name__}"
        for key in kwargs:
            raise _check.unsupported_argument(owner, key)
        self.from_logits = _check.boolean(owner, "from_logits", from_logits)

    def __repr__(self):
        return f"losses.{type(self).__name__}(from_logits={self.from_logits})"


class BinaryCrossentropy(Loss):
    """The cross-entropy of labels in [0, 1] (one per row) and one output per row, as
    keras.losses.BinaryCrossentropy (compile(loss="binary_crossentropy") is BinaryCrossentropy()).

    from_logits: False (the default): the outputs are probabilities (a sigmoid output layer); True: they are
    logits, to which the loss applies the sigmoid itself.
    """

    name = "binary_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    """The cross-entropy of class indices (one integer label per row, from 0 to outputs - 1) and one output per
    class, as keras.losses.SparseCategoricalCrossentropy (compile(loss="sparse_categorical_crossentropy") is
    SparseCategoricalCrossentropy()).

    from_logits: False (the default): the outputs are probabilities (a softmax output layer); True: they are
    logits, to which the loss applies the softmax itself.
    """

    name = "sparse_categorical_crossentropy"


class MeanSquaredError(Loss):
    """The mean of the squared differences between labels and outputs, as keras.losses.MeanSquaredError
    (compile(loss="mse") or "mean_squared_error"). It takes no arguments: no from_logits, as in Keras, since
    a regression's outputs are the predicted values themselves."""

    name = "mse"

    def __init__(self, **kwargs):
        if "from_logits" in kwargs:
            raise _check.ConfigError("losses.MeanSquaredError: unknown argument 'from_logits' (it applies to the "
                                     "cross-entropies, whose outputs may be logits; a regression's outputs are "
                                     "the values themselves)")
        super().__init__(**kwargs)

    def __repr__(self):
        return "losses.MeanSquaredError()"


def get(identifier):
    """(name, from_logits) of a loss given by name or object."""
    if isinstance(identifier, Loss):
        return identifier.name, identifier.from_logits
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier, identifier)
        _check.engine_check("compile", "train.", train=[("loss", name)])
        return name, False
    raise _check.ConfigError(f"compile: loss must be a name ({', '.join(_NAMES)}) or a trainrr.losses object, "
                             f"got {identifier!r}")
