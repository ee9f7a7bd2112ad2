"""trainrr: record and replay neural-network training, from Python.

    import trainrr
    from trainrr import layers, optimizers

    model = trainrr.Sequential([layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    with trainrr.record("run.trr", seed=42):
        model.fit(x, y, epochs=10, batch_size=32)
    trainrr.replay("run.trr").status        # "reproduced"
"""

from . import _trainrr, layers, losses, optimizers
from ._errors import (CheckpointNotFoundError, ConfigError, DataError, DeviceError, TraceArgumentError, TraceError,
                      TrainrrError)
from .models import History, Sequential
from .recording import Recording, record
from .reports import Report, bisect, diff, replay
from .traces import Trace, open  # noqa: A004

__version__ = _trainrr.version

__all__ = ["Sequential", "History", "layers", "optimizers", "losses", "record", "Recording", "replay", "diff",
           "bisect", "Report", "open", "Trace", "ConfigError", "DataError", "DeviceError", "TraceError",
           "TraceArgumentError", "CheckpointNotFoundError", "TrainrrError"]
