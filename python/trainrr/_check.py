"""Arguments checked by the engine itself, as it checks a TOML configuration, so that a Python argument and a
configuration key are refused for the same reasons and in the same words."""

import difflib
import inspect
import numbers
import operator
import re

import numpy as np

from . import _toml
from ._errors import ConfigError

_NAME = "arguments"
MAX_SEED = 2**63 - 1  # a seed is a TOML integer (int64)
# A configuration that trains on nothing, around the piece under test.
_DATA = '[data]\nsource = "synthetic"\nshape = [1]\nclasses = 2\nsamples = 2\n'


def engine_check(owner, prefix, layer=None, train=(), optimizer=None, runtime=()):
    """Raises ConfigError("owner: key: message") when the engine refuses the arguments. `prefix` is the
    configuration key they sit under ("model.layers[0].", "train.optimizer.", ...)."""
    from . import _trainrr

    lines = [_DATA]
    _toml.table(lines, "[[model.layers]]", layer if layer is not None else [("type", "Dense"), ("units", 1)])
    train = list(train)
    if not any(k == "loss" for k, _ in train):
        train.append(("loss", "mse"))
    _toml.table(lines, "[train]", train)
    if optimizer is not None:
        _toml.table(lines, "[train.optimizer]", optimizer)
    if runtime:
        _toml.table(lines, "[runtime]", runtime)
    try:
        _trainrr.parse_config("\n".join(lines) + "\n", _NAME, "/")
    except ConfigError as e:
        raise ConfigError(f"{owner}: {engine_message(str(e), prefix)}") from None


def engine_message(message, prefix):
    """The engine's message without the file and line of the configuration it checked, and with keys
    named as arguments ("activation", not "model.layers[0].activation")."""
    message = re.sub(r"^" + re.escape(_NAME) + r"(:\d+(:\d+)?| \(--set\))?: ", "", message)
    return message.replace(prefix, "") if prefix else message


def unknown_argument(owner, name, known):
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (it takes {', '.join(known)})"
    return ConfigError(f"{owner}: unknown argument '{name}'{hint}")


def unsupported_argument(owner, name, why="trainrr's engine has no such setting"):
    return ConfigError(f"{owner}: argument '{name}' is not supported: {why}")


# --- Python values of arguments ----------------------------------------------------------------------------
# An argument that takes an integer takes a Python int or a numpy integer (operator.index), never a bool; one
# that takes a number also takes a float or a numpy floating scalar. Each is handed on as a plain Python value
# (plain()).


def shown(value):
    """A refused value as a message shows it: a Python int or float as itself, anything else with its type,
    so that '2' (a string) or 2 (a numpy float) is not taken for the number it looks like."""
    if type(value) in (int, float) or (type(value) in (list, tuple) and all(type(v) in (int, float) for v in value)):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


def integer(owner, name, value, minimum, maximum=None):
    """`value` as an int: "owner: name must be an integer, MIN or more, got ..." when it is none or out of range."""
    number = None
    if not isinstance(value, (bool, np.bool_)):
        try:
            number = operator.index(value)
        except TypeError:
            pass
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f" from {minimum} to {maximum}" if maximum is not None else f", {minimum} or more"
        raise ConfigError(f"{owner}: {name} must be an integer{bounds}, got {shown(value)}")
    return number


def real(owner, name, value, accepts, requirement):
    """`value` as a float, refused unless it is a real number (not a bool) for which accepts(value) holds:
    "owner: name must be REQUIREMENT, got ..."."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not accepts(float(plain(value))):
        raise ConfigError(f"{owner}: {name} must be {requirement}, got {shown(value)}")
    return float(plain(value))


def boolean(owner, name, value):
    """`value` as a bool: True, False or a numpy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}: {name} must be True or False, got {shown(value)}")
    return bool(value)


def plain(value):
    """numpy scalars (in lists and tuples too) as the Python values they hold. A floating scalar of less than
    double precision (float32, float16) is the number its shortest decimal says, the one that reads back as it in
    its own precision: np.float32(0.001) is 0.001, as in Keras, which keeps it as a float32 again, and not the
    double it widens to (0.0010000000474974513), which would be another learning rate in the run's
    configuration. A float64 is taken as it is."""
    if isinstance(value, np.floating) and np.finfo(value.dtype).bits < 64:
        return float(np.format_float_scientific(value, unique=True))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def defaults(function):
    """The default values of `function`'s arguments, by name (those without one are left out)."""
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.default is not inspect.Parameter.empty}


def is_default(value, default, normal=lambda v: v):
    """Whether `value` is the default itself (the same type and value, after `normal`): such an argument is
    left out of the configuration, where the engine's default, Keras' too, is the same."""
    value, default = plain(normal(value)), normal(default)
    return default is not None and type(value) is type(default) and value == default


def toml_values(owner, values):
    """Refuses (ConfigError naming the argument) a value that a configuration cannot hold: a function (a
    learning-rate schedule, say), an object, a dict."""
    for key, value in values.items():
        try:
            _toml.value(value)
        except TypeError:
            what = ("a number (a schedule is not supported: the engine trains with a constant rate)"
                    if key == "learning_rate" else "a string, a number, a bool or a list of them")
            raise ConfigError(f"{owner}: {key} must be {what}, got {shown(value)}") from None


def overrides(overrides, what):
    """The overrides argument (a dict, {"runtime.threads": 1}, or "key=value" strings) as the engine's --set
    strings."""
    if isinstance(overrides, dict):
        sets = []
        for k, v in overrides.items():
            if not isinstance(k, str) or not k:
                raise ConfigError(f"{what}: overrides: a key must be a configuration key (a string such as "
                                  f"'runtime.threads'), got {shown(k)}")
            try:
                sets.append(f"{k}={_toml.value(plain(v))}")
            except TypeError:
                raise ConfigError(f"{what}: overrides: {k}: {shown(v)} is not a value a configuration "
                                  f"holds (a string, a number, a bool or a list of them)") from None
        return sets
    if isinstance(overrides, str):
        raise ConfigError(f"{what}: overrides must be a list of 'key=value' strings or a dict")
    try:
        sets = list(overrides)
    except TypeError:
        raise ConfigError(f"{what}: overrides must be a dict or a list of 'key=value' strings, got "
                          f"{shown(overrides)}") from None
    for o in sets:
        if not isinstance(o, str) or "=" not in o or o.startswith("="):
            raise ConfigError(f"{what}: overrides: expected 'key=value' strings (such as 'train.epochs=5'), "
                              f"got {shown(o)}")
    return sets
