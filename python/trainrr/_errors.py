"""The exceptions trainrr raises: the engine's own message, under the kind of input that was wrong."""


class TrainrrError(Exception):
    """Base class of trainrr's errors."""


class ConfigError(TrainrrError, ValueError):
    """A model, compile or fit argument, or a TOML configuration, that the engine does not take."""


class DataError(TrainrrError, ValueError):
    """Arrays or data files the run cannot train on: dtype, shape, a NaN, labels that do not suit the loss."""


class TraceError(TrainrrError):
    """A trace that cannot be written, read or replayed here (a missing file, a damaged or foreign one)."""
