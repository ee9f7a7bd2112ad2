"""Optimizers, with Keras' names, arguments and defaults (keras.optimizers): SGD (learning rate 0.01),
Adam, AdamW and RMSprop (0.001), Adam's epsilon 1e-7."""

import re

from . import _check
from ._check import unknown_argument, unsupported_argument

_KERAS_ONLY = {"amsgrad", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
               "ema_overwrite_frequency", "jit_compile", "name", "loss_scale_factor", "gradient_accumulation_steps"}


class Optimizer:
    """An optimizer: its type and the arguments given, as the configuration's [train.optimizer] table holds
    them. An argument left at its default (Keras', which the engine shares) is not written."""

    type = None
    _arguments = ()

    def __init__(self, **kwargs):
        owner = f"optimizers.{type(self).__name__}"
        for key in list(kwargs):
            if key in self._arguments:
                continue
            # Keras 3 gives every optimizer a weight_decay (default None, which asks for none); the engine's
            # decoupled weight decay is AdamW's.
            if key == "weight_decay":
                if kwargs[key] is None:
                    del kwargs[key]
                    continue
                raise unsupported_argument(owner, key, "the engine decays weights in AdamW alone: use "
                                                       "optimizers.AdamW(weight_decay=...)")
            if key in _KERAS_ONLY:
                raise unsupported_argument(owner, key)
            raise unknown_argument(owner, key, list(self._arguments))
        defaults = _check.defaults(type(self).__init__)
        self._given = {k: _check.plain(v) for k, v in kwargs.items()
                       if v is not None and not _check.is_default(v, defaults.get(k))}
        _check.toml_values(owner, self._given)
        _check.engine_check(owner, "train.optimizer.", optimizer=self.items())

    def items(self):
        """The optimizer as (key, value) pairs of its [train.optimizer] table."""
        return [("type", self.type)] + [(k, self._given[k]) for k in self._arguments if k in self._given]

    def get_config(self):
        """The arguments given that differ from the defaults, as a dict."""
        return dict(self._given)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._given.items())
        return f"optimizers.{type(self).__name__}({args})"

    @staticmethod
    def from_spec(spec):
        cls = _TYPES[spec["type"]]
        return cls(**{k: v for k, v in spec.items() if k != "type"})


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum, as keras.optimizers.SGD
    (compile(optimizer="sgd") is SGD()).

    learning_rate: the step size, a positive number (default 0.01; a schedule is not supported).
    momentum: in [0, 1) (default 0: plain gradient descent).
    nesterov: Nesterov momentum (default False).
    """

    type = "sgd"
    _arguments = ("learning_rate", "momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)


class Adam(Optimizer):
    """Adam, as keras.optimizers.Adam (compile(optimizer="adam") is Adam()).

    learning_rate: the step size, a positive number (default 0.001; a schedule is not supported).
    beta_1: the decay of the first-moment estimates (default 0.9).
    beta_2: the decay of the second-moment estimates (default 0.999).
    epsilon: added to the denominator, for numerical stability (default 1e-7, Keras').
    """

    type = "adam"
    _arguments = ("learning_rate", "beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)


class AdamW(Optimizer):
    """Adam with decoupled weight decay, as keras.optimizers.AdamW (compile(optimizer="adamw") is AdamW()).

    learning_rate: the step size, a positive number (default 0.001; a schedule is not supported).
    weight_decay: the decay applied to the weights at each step, scaled by the learning rate (default 0.004).
    beta_1, beta_2, epsilon: as Adam's (defaults 0.9, 0.999, 1e-7).
    """

    type = "adamw"
    _arguments = ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, **kwargs)


class RMSprop(Optimizer):
    """RMSprop, as keras.optimizers.RMSprop (compile's default optimizer, "rmsprop", is RMSprop()).

    learning_rate: the step size, a positive number (default 0.001; a schedule is not supported).
    rho: the decay of the moving average of squared gradients (default 0.9).
    momentum: in [0, 1) (default 0).
    epsilon: added to the denominator, for numerical stability (default 1e-7).
    centered: divide by the gradients' estimated variance rather than their second moment (default False).
    """

    type = "rmsprop"
    _arguments = ("learning_rate", "rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, rho=rho, momentum=momentum, epsilon=epsilon,
                         centered=centered, **kwargs)


_TYPES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier):
    """An optimizer from its name ("adam", as compile(optimizer="adam") takes it) or itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _TYPES.get(identifier) or _TYPES.get(identifier.lower())
        if cls is None:
            # The engine's words for its key `type`, said of the argument that gave it.
            try:
                _check.engine_check("compile", "train.optimizer.", optimizer=[("type", identifier)])
            except _check.ConfigError as e:
                raise _check.ConfigError(re.sub(r"^compile: type: ", "compile: optimizer: ", str(e))) from None
        return cls()
    raise _check.ConfigError(f"compile: optimizer must be a name (sgd, adam, adamw, rmsprop) or a "
                             f"trainrr.optimizers object, got {identifier!r}")
