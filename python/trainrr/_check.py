"""Arguments checked by the engine itself, as it checks a TOML configuration, so that a Python argument and a
configuration key are refused for the same reasons and in the same words."""

import difflib
import re

from . import _toml
from ._errors import ConfigError

_NAME = "arguments"
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
