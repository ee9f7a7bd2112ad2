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
# The input shape, which Keras takes from the first layer and trainrr from the data.
_INPUT_SHAPE = {"input_shape", "input_dim", "batch_input_shape"}


class Layer:
    """A layer of a Sequential model: its type and the arguments given, as the TOML configuration holds them
    (one [[model.layers]] table). An argument left at its default (Keras', which the engine shares) is not
    written."""

    type = None
    _engine_name = None  # the name the engine gives a layer made without one, set when a model takes it
    _named_by = None  # id() of the model that gave _engine_name
    _kept_name = None  # _engine_name from another model, kept in the model that holds the layer now
    _arguments = ()  # the arguments this layer takes, besides name
    _ranges = ()  # (argument, accepts(value), what it must be) for values the engine takes in type, not in range

    def __init__(self, **kwargs):
        owner = f"layers.{type(self).__name__}"
        known = list(self._arguments) + ["name"]
        for key in kwargs:
            if key in known:
                continue
            if key in _INPUT_SHAPE:
                raise unsupported_argument(owner, key, "a model takes its input shape from the data fit trains "
                                                       "on: leave the argument out")
            if key in _KERAS_ONLY:
                raise unsupported_argument(owner, key)
            raise unknown_argument(owner, key, known)
        defaults = _check.defaults(type(self).__init__)
        for key in self._arguments:
            if key not in defaults and kwargs.get(key) is None:  # Keras has no default for it either
                raise _check.ConfigError(f"{owner}: argument '{key}' is required, got None")
        self._given = {k: _check.plain(v) for k, v in kwargs.items()
                       if v is not None and not _check.is_default(v, defaults.get(k), _pair)}
        # activation=None is Keras' "linear"; a function in its place has no name the trace could hold.
        if "activation" in self._given and not isinstance(self._given["activation"], str):
            raise _check.ConfigError(f"{owner}: activation must be the name of one (linear, relu, sigmoid, tanh, "
                                     f"softmax), got {self._given['activation']!r}")
        _check.toml_values(owner, self._given)
        _check.engine_check(owner, "model.layers[0].", layer=self.items())
        # The configuration's parser takes these values in type, not in range (the model checks that when fit
        # builds it): here the layer is refused at once, with the same bounds.
        for key, accepts, requirement in self._ranges:
            value = self._given.get(key)
            if value is not None and not accepts(value):
                raise _check.ConfigError(f"{owner}: {key} must be {requirement}, got {_check.shown(value)}")

    def _fixed_name(self):
        """The name no numbering changes: the one given, or one another model gave it, kept."""
        return self._given.get("name") or self._kept_name

    def items(self):
        """The layer as (key, value) pairs of its configuration table: a name kept from another model is
        written as one given."""
        given = dict(self._given)
        if self._kept_name and not given.get("name"):
            given["name"] = self._kept_name
        return [("type", self.type)] + [(k, given[k]) for k in ["name"] + list(self._arguments) if k in given]

    def get_config(self):
        """The arguments given that differ from the defaults, as a dict."""
        return dict(self._given)

    @property
    def name(self):
        """The name given, or, once the layer is in a model, the one the engine gives it there: its type and a
        running number per type (dense_1, dense_2, ...), as summary(), traces and get_weights name it.
        None for a layer made without a name and not yet added to a model. A layer that a model has named keeps
        that name in any other model it is added to, as one given there: no model renames it."""
        return self._given.get("name") or self._engine_name

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
    """A densely connected layer: activation(x @ kernel + bias), as keras.layers.Dense.

    units: the number of outputs (a positive integer).
    activation: None (linear, the default), "relu", "sigmoid", "tanh" or "softmax".
    use_bias: whether the layer adds a bias (default True).
    kernel_initializer: "glorot_uniform" (the default), "glorot_normal", "he_normal", "he_uniform" or "zeros".
    args: Keras' next arguments by position (bias_initializer, the regularizers, the constraints), which the
    engine does not take: Keras' default ("zeros", None) is taken, any other value refused, never read as
    another argument.
    name: the layer's name in the trace and in reports (default: dense_1, dense_2, ...).
    """

    type = "Dense"
    _arguments = ("units", "activation", "use_bias", "kernel_initializer")
    _ranges = (("units", lambda v: v > 0, "a positive integer"),)

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform", *args, name=None,
                 **kwargs):
        _keras_positions("layers.Dense", 4, args, _DENSE_NEXT)
        super().__init__(units=units, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, name=name, **kwargs)


class Conv2D(Layer):
    """A 2D convolution over (rows, height, width, channels) inputs, as keras.layers.Conv2D.

    filters: the number of output channels (a positive integer).
    kernel_size: the window, an integer or a pair (height, width).
    strides: the step of the window, an integer or a pair (default (1, 1)).
    padding: "valid" (no padding, the default) or "same" (padded so that the output has ceil(size / stride)
    positions).
    activation: None (linear, the default), "relu", "sigmoid", "tanh" or "softmax".
    use_bias: whether the layer adds a bias (default True).
    kernel_initializer: "glorot_uniform" (the default), "glorot_normal", "he_normal", "he_uniform" or "zeros".
    args: Keras' next arguments by position: data_format, dilation_rate and groups, which the engine does not
    take (Keras' defaults, and "channels_last", its layout, are taken), then activation, use_bias and
    kernel_initializer, as Keras reads them.
    name: the layer's name (default: conv2d_1, ...).
    """

    type = "Conv2D"
    _arguments = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "kernel_initializer")
    _ranges = (("filters", lambda v: v > 0, "a positive integer"),)

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", *args, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", name=None, **kwargs):
        mine = _keras_positions("layers.Conv2D", 4, args,
                                (("data_format", (None, "channels_last")), ("dilation_rate", (1,)), ("groups", (1,)),
                                 ("activation", ()), ("use_bias", ()), ("kernel_initializer", ())) + _DENSE_NEXT,
                                {"activation": (activation, None), "use_bias": (use_bias, True),
                                 "kernel_initializer": (kernel_initializer, "glorot_uniform")})
        activation, use_bias = mine["activation"], mine["use_bias"]
        kernel_initializer = mine["kernel_initializer"]
        super().__init__(filters=filters, kernel_size=_pair(kernel_size), strides=_pair(strides), padding=padding,
                         activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         name=name, **kwargs)


class MaxPool2D(Layer):
    """The maximum over each window of a (rows, height, width, channels) input, as keras.layers.MaxPool2D
    (also MaxPooling2D).

    pool_size: the window, an integer or a pair (default (2, 2)).
    strides: the step of the window, an integer or a pair (default None: pool_size).
    padding: "valid" (the default) or "same".
    args: Keras' next argument by position, data_format: None or "channels_last" (the engine's layout).
    name: the layer's name (default: max_pooling2d_1, ...).
    """

    type = "MaxPool2D"
    _arguments = ("pool_size", "strides", "padding")

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", *args, name=None, **kwargs):
        _keras_positions("layers.MaxPool2D", 3, args, (("data_format", (None, "channels_last")),))
        super().__init__(pool_size=_pair(pool_size), strides=_pair(strides), padding=padding, name=name, **kwargs)


MaxPooling2D = MaxPool2D


class Flatten(Layer):
    """Reshapes each sample to one dimension ((rows, h, w, c) to (rows, h * w * c)), as keras.layers.Flatten.

    args: Keras' argument by position, data_format: None or "channels_last" (the engine's layout).
    name: the layer's name (default: flatten_1, ...).
    """

    type = "Flatten"

    def __init__(self, *args, name=None, **kwargs):
        _keras_positions("layers.Flatten", 0, args, (("data_format", (None, "channels_last")),))
        super().__init__(name=name, **kwargs)


class Dropout(Layer):
    """Sets a random fraction `rate` of its inputs to 0 while training, scaling the rest by 1 / (1 - rate), as
    keras.layers.Dropout; passes its inputs through in evaluate and predict. Its draws come from the run's
    seed and are recorded.

    rate: the fraction dropped, a number in [0, 1) (0: nothing is dropped, nothing is drawn).
    args: Keras' next arguments by position, noise_shape and seed, which the engine does not take (the run's
    seed draws the masks): None, Keras' default, is taken, any other value refused.
    name: the layer's name (default: dropout_1, ...).
    """

    type = "Dropout"
    _arguments = ("rate",)
    _ranges = (("rate", lambda v: 0 <= v < 1, "a number in [0, 1)"),)

    def __init__(self, rate, *args, name=None, **kwargs):
        _keras_positions("layers.Dropout", 1, args, (("noise_shape", _DEFAULT), ("seed", _DEFAULT)))
        super().__init__(rate=rate, name=name, **kwargs)


class BatchNormalization(Layer):
    """Normalizes each feature (each channel of an image) by the batch's mean and variance while training and
    by moving averages of them in evaluate and predict, then scales and shifts it by learned parameters, as
    keras.layers.BatchNormalization.

    momentum: the moving averages' momentum, a number in [0, 1] (default 0.99).
    epsilon: added to the variance, a positive number (default 0.001).
    args: Keras' arguments by position: axis, which the engine does not take (it normalizes the last axis:
    -1, Keras' default, is taken, never read as a momentum), then momentum, epsilon, center and scale (True,
    Keras' default, is taken), as Keras reads them.
    name: the layer's name (default: batch_normalization_1, ...).
    """

    type = "BatchNormalization"
    _arguments = ("momentum", "epsilon")
    _ranges = (("momentum", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
               ("epsilon", lambda v: v > 0, "a positive number"))

    def __init__(self, *args, momentum=0.99, epsilon=0.001, name=None, **kwargs):
        # Keras' first arguments are axis, momentum, epsilon: by position, axis (which the engine does not
        # take) comes first, never a momentum.
        mine = _keras_positions("layers.BatchNormalization", 0, args,
                                (("axis", (-1,)), ("momentum", ()), ("epsilon", ()), ("center", (True,)),
                                 ("scale", (True,))),
                                {"momentum": (momentum, 0.99), "epsilon": (epsilon, 0.001)})
        momentum, epsilon = mine["momentum"], mine["epsilon"]
        super().__init__(momentum=momentum, epsilon=epsilon, name=name, **kwargs)


class Activation(Layer):
    """Applies an activation to its inputs, as keras.layers.Activation.

    activation: "linear", "relu", "sigmoid", "tanh" or "softmax".
    name: the layer's name (default: activation_1, ...).
    """

    type = "Activation"
    _arguments = ("activation",)

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(activation=activation, name=name, **kwargs)


# Keras' values that ask for nothing the engine lacks: its defaults, and the layout the engine computes in.
_DEFAULT = (None,)


def _keras_positions(owner, shared, args, order, own=None):
    """The arguments given by position past the `shared` ones this signature has in Keras' places, read as
    Keras reads them (`order`: (name, the values that ask for nothing) in Keras' order): this layer's own
    arguments among them (`own`: name -> (the value given by name, its default)) are returned; another at a
    value that asks for nothing (Keras' default) is taken; any other is refused, naming its position, its value
    and Keras' name for it. A Keras call's positional bias_initializer or axis is never read as another
    argument."""
    own = own or {}
    out = {key: given for key, (given, _) in own.items()}
    if len(args) > len(order):
        raise TypeError(f"{owner}: too many positional arguments ({shared + len(args)}; Keras takes "
                        f"{shared + len(order)} by position here)")
    for i, (value, (key, asks_nothing)) in enumerate(zip(args, order)):
        if key in own:
            given, default = own[key]
            if given is not default and given != default:
                raise TypeError(f"{owner}: got multiple values for argument '{key}'")
            out[key] = value
            continue
        if any(_same(value, v) for v in asks_nothing):
            continue
        later = [k for k, _ in order[i + 1:] if k in own]
        raise _check.ConfigError(
            f"{owner}: argument {shared + i + 1} by position, {_check.shown(value)}, is Keras' {key}, which "
            f"trainrr's engine does not take" +
            (f" (give {', '.join(later)} by name)" if later else ""))
    return out


def _same(value, default):
    """Whether `value` is `default`, a pair and an int of one value alike ((1, 1), [1, 1], 1)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, (list, tuple)) and not isinstance(default, (list, tuple)):
        return len(value) == 2 and all(v == default for v in value)
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value is default if default is None else value == default


_DENSE_NEXT = (("bias_initializer", ("zeros",)), ("kernel_regularizer", _DEFAULT), ("bias_regularizer", _DEFAULT),
               ("activity_regularizer", _DEFAULT), ("kernel_constraint", _DEFAULT), ("bias_constraint", _DEFAULT))


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else v


_TYPES = {"Dense": Dense, "Conv2D": Conv2D, "MaxPool2D": MaxPool2D, "MaxPooling2D": MaxPool2D, "Flatten": Flatten,
          "Dropout": Dropout, "BatchNormalization": BatchNormalization, "Activation": Activation}
