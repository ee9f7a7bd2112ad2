"""trainrr.record: the run that `fit` trains inside it is recorded to a trace, as `trainrr record` does."""

import os
import threading

from . import _check
from ._errors import ConfigError

_active = threading.local()


class Recording:
    """Where and how a run is recorded. After the run: `trace` (its path), `bytes` (its size) and `seed`
    (the seed the run used, drawn from the OS when none was given)."""

    def __init__(self, path, level="step", seed=None, checkpoint_every=0, embed_data=False):
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"record: path must be a file path, got {path!r}")
        if level not in ("step", "layer", "op"):
            raise ConfigError(f"record: level must be 'step', 'layer' or 'op', got {level!r}")
        if seed is not None:
            seed = _check.integer("record", "seed", seed, 0, _check.MAX_SEED)
        checkpoint_every = _check.integer("record", "checkpoint_every", checkpoint_every, 0)
        self.path = os.fspath(path)
        self.level = level
        self.seed = seed
        self.checkpoint_every = checkpoint_every
        self.embed_data = _check.boolean("record", "embed_data", embed_data)
        self.trace = None
        self.bytes = None
        self._used = False

    def settings(self, embed_data):
        return {"path": self.path, "level": self.level, "checkpoint_every": self.checkpoint_every,
                "embed_data": self.embed_data or embed_data}

    def check_unused(self):
        """A recording holds one run: the first fit inside it that starts."""
        if self._used:
            raise ConfigError(f"record: {self.path} holds one run, which an earlier fit recorded; "
                              f"use another trainrr.record(...) for another run")

    def claim(self):
        self.check_unused()
        self._used = True

    def __enter__(self):
        stack = getattr(_active, "stack", None)
        if stack is None:
            stack = _active.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc):
        _active.stack.pop()
        return False

    def __repr__(self):
        done = f", {self.bytes} bytes" if self.bytes is not None else ""
        return f"<trainrr.Recording {self.path!r} level={self.level}{done}>"


def record(path, level="step", seed=None, checkpoint_every=0, embed_data=False):
    """Records the run the first `fit` inside the `with` block trains:

        with trainrr.record("run.trr", level="layer", seed=42):
            model.fit(x, y, epochs=10)

    level: "step" (each step's loss, metrics and parameter digests), "layer" (and every layer's output) or
    "op" (every op's output). seed: the run's seed (None: drawn from the OS and recorded). checkpoint_every:
    a checkpoint every N steps besides the initial and final states. embed_data: also store the data files
    of a configuration's [data] in the trace (arrays handed to fit are always stored)."""
    return Recording(path, level=level, seed=seed, checkpoint_every=checkpoint_every, embed_data=embed_data)


def current():
    stack = getattr(_active, "stack", None)
    return stack[-1] if stack else None


def check_one_trace(rec, where):
    """A run is recorded to one trace: `rec`, the recording a fit is about to record to, and no open `with
    trainrr.record(...)` block that has not recorded its run yet, which would claim the same run and keep
    nothing of it. A `record=` naming the block's own path is refused too: it would record the run without
    the block's settings (its seed, level) and leave the block to record the next fit over it."""
    for other in getattr(_active, "stack", None) or []:
        if other is rec or other._used:
            continue
        if other.path == rec.path:
            raise ConfigError(f"{where}: record={rec.path!r} inside the `with trainrr.record({other.path!r})` "
                              f"block, which has recorded no run yet: the block records the first fit inside "
                              f"it, with its own settings; drop record= from this fit (the block records it)")
        raise ConfigError(f"{where}: this run would be recorded to {rec.path}, but the enclosing "
                          f"`with trainrr.record({other.path!r})` block, which has recorded no run yet, "
                          f"records the first fit inside it: a run is recorded to one trace (leave that "
                          f"block, or drop the other recording)")
