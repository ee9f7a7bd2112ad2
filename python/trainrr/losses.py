"""Losses, with Keras' names (keras.losses): compile(loss="binary_crossentropy") or an object when the
model's output is logits (from_logits=True)."""

from . import _check

_NAMES = ("binary_crossentropy", "sparse_categorical_crossentropy", "mse")
# Keras' other spellings of the same losses.
_ALIASES = {"mean_squared_error": "mse", "MeanSquaredError": "mse", "BinaryCrossentropy": "binary_crossentropy",
            "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy"}


class Loss:
    name = None

    def __init__(self, from_logits=False, **kwargs):
        owner = f"losses.{type(self).__name__}"
        for key in kwargs:
            raise _check.unsupported_argument(owner, key)
        self.from_logits = _check.boolean(owner, "from_logits", from_logits)

    def __repr__(self):
        return f"losses.{type(self).__name__}(from_logits={self.from_logits})"


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"


class MeanSquaredError(Loss):
    """Keras' MeanSquaredError takes no from_logits: its outputs are the predicted values themselves."""

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
