"""Layers, with Keras' names, arguments and defaults (keras.layers). Each takes only the arguments the
engine implements; one Keras has and the engine lacks (a regularizer, say) is refused by name."""

from . import _check
from ._check import unknown_argument, unsupported_argument

# Keras arguments the engine does not implement: refused by name rather than ignored.
_KERAS_ONLY = {
    "bias_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
    "bias_constraint", "input_shape", "input_dim", "batch_input_shape", "dtype", "trainable", "data_format",
    "dilation_rate", "groups", "noise_shape", "seed", "axis", "center", "scale", "beta_initializer",
    "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer", "beta_regularizer",
    "gamma_regularizer", "beta_constraint", "gamma_constraint", "synchronized", "lora_rank",
}


class Layer:
    """A layer of a Sequential model: its type and the arguments given, as the TOML configuration holds them
    (one [[model.layers]] table)."""

    type = None
    _arguments = ()  # the arguments this layer takes, besides name
    _required = ()
    _ranges = ()  # (argument, accepts(value), what it must be) for values the engine takes in type, not in range

    def __init__(self, **kwargs):
        owner = f"layers.{type(self).__name__}"
        known = list(self._arguments) + ["name"]
        for key in kwargs:
            if key in known:
                continue
            if key in _KERAS_ONLY:
                raise unsupported_argument(owner, key)
            raise unknown_argument(owner, key, known)
        self._given = {k: _check.plain(v) for k, v in kwargs.items() if v is not None}
        for key in self._required:
            if key not in self._given:
                raise _check.ConfigError(f"{owner}: argument '{key}' is required")
        # activation=None is Keras' "linear"; a function in its place has no name the trace could hold.
        if "activation" in self._given and not isinstance(self._given["activation"], str):
            raise _check.ConfigError(f"{owner}: activation must be the name of one (linear, relu, sigmoid, tanh, "
                                     f"softmax), got {self._given['activation']!r}")
        _check.engine_check(owner, "model.layers[0].", layer=self.items())
        # The configuration's parser takes these values in type, not in range (the model checks that when fit
        # builds it): here the layer is refused at once, with the same bounds.
        for key, accepts, requirement in self._ranges:
            value = self._given.get(key)
            if value is not None and not accepts(value):
                raise _check.ConfigError(f"{owner}: {key} must be {requirement}, got {_check.shown(value)}")

    def items(self):
        """The layer as (key, value) pairs of its configuration table."""
        return [("type", self.type)] + [(k, self._given[k]) for k in ["name"] + list(self._arguments)
                                        if k in self._given]

    def get_config(self):
        return dict(self._given)

    @property
    def name(self):
        return self._given.get("name")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._given.items())
        return f"layers.{type(self).__name__}({args})"

    @staticmethod
    def from_spec(spec):
        """A layer from the engine's description of one (a configuration's [[model.layers]] table)."""
        cls = _TYPES[spec["type"]]
        args = {k: v for k, v in spec.items() if k != "type" and k in cls._arguments + ("name",)}
        if not args.get("name"):
            args.pop("name", None)
        return cls(**args)


class Dense(Layer):
    type = "Dense"
    _arguments = ("units", "activation", "use_bias", "kernel_initializer")
    _required = ("units",)
    _ranges = (("units", lambda v: v > 0, "a positive integer"),)

    def __init__(self, units=None, activation=None, use_bias=None, kernel_initializer=None, **kwargs):
        super().__init__(units=units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, **kwargs)


class Conv2D(Layer):
    type = "Conv2D"
    _arguments = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "kernel_initializer")
    _required = ("filters", "kernel_size")
    _ranges = (("filters", lambda v: v > 0, "a positive integer"),)

    def __init__(self, filters=None, kernel_size=None, strides=None, padding=None, activation=None, use_bias=None,
                 kernel_initializer=None, **kwargs):
        super().__init__(filters=filters, kernel_size=_pair(kernel_size), strides=_pair(strides), padding=padding,
                         activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer, **kwargs)


class MaxPool2D(Layer):
    type = "MaxPool2D"
    _arguments = ("pool_size", "strides", "padding")

    def __init__(self, pool_size=None, strides=None, padding=None, **kwargs):
        super().__init__(pool_size=_pair(pool_size), strides=_pair(strides), padding=padding, **kwargs)


MaxPooling2D = MaxPool2D


class Flatten(Layer):
    type = "Flatten"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class Dropout(Layer):
    type = "Dropout"
    _arguments = ("rate",)
    _required = ("rate",)
    _ranges = (("rate", lambda v: 0 <= v < 1, "a number in [0, 1)"),)

    def __init__(self, rate=None, **kwargs):
        super().__init__(rate=rate, **kwargs)


class BatchNormalization(Layer):
    type = "BatchNormalization"
    _arguments = ("momentum", "epsilon")
    _ranges = (("momentum", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
               ("epsilon", lambda v: v > 0, "a positive number"))

    def __init__(self, momentum=None, epsilon=None, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)


class Activation(Layer):
    type = "Activation"
    _arguments = ("activation",)
    _required = ("activation",)

    def __init__(self, activation=None, **kwargs):
        super().__init__(activation=activation, **kwargs)


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else v


_TYPES = {"Dense": Dense, "Conv2D": Conv2D, "MaxPool2D": MaxPool2D, "MaxPooling2D": MaxPool2D, "Flatten": Flatten,
          "Dropout": Dropout, "BatchNormalization": BatchNormalization, "Activation": Activation}
