"""trainrr.open: what a trace holds, as Python values. Steps, epochs, checkpoints and the footer are
described with the keys of `trainrr dump --json`."""

import json
import os

from . import _check
from ._errors import CheckpointNotFoundError, ConfigError, TraceError


class Trace:
    """A trace file, read as untrusted input. `header` (dict), `config` (the run's TOML text),
    `environment` (dict), `seed`; steps(), epochs(), losses(), checkpoints(), checkpoint(n), footer();
    `stop`, `truncated` and `notes` say how reading the steps went. Every read is of the file open() read
    the header from, kept open: a recording to the same path since then (a new file there) is not mixed in."""

    def __init__(self, path):
        from . import _trainrr

        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"open: path must be a file path, got {path!r}")
        self.path = os.fspath(path)
        self._native = _trainrr.TraceFile(self.path)
        self.header = json.loads(self._native.header_json())
        self.environment = dict(self._native.environment())
        self.config = self._native.config()
        self.seed = self.header["seed"]
        self._messages = None

    def _read(self):
        if self._messages is None:
            messages, losses, stop, truncated, notes = self._native.read(True)
            self._messages = messages
            self._losses = losses
            self._stop = stop
            self._truncated = truncated
            self._notes = notes
        return self._messages

    @property
    def stop(self):
        """Why reading stopped before the end of the trace (a cut, or damage; a file that ends without its
        footer, as a killed recording leaves it, is a cut there), or None: it read to the footer, or to the
        last complete message of a trace still being recorded (see .notes).
        The first access reads the trace."""
        self._read()
        return self._stop

    @property
    def truncated(self):
        """True when `stop` is a cut (the end of a recording that was killed), False when it is damage or
        reading went to the end."""
        self._read()
        return self._truncated

    @property
    def notes(self):
        """The reader's notes, as strings: that the trace is still being recorded, message kinds it skipped."""
        self._read()
        return self._notes

    def steps(self):
        """Every step, in order: dump's step object ("step", "epoch" counted from 1, "batch", ...), with
        "events" (dump's event objects) and, for a completed step, its end ("loss", "metrics", "params",
        "grads"); a loss or metric is a float, float("inf") or float("nan") where it is not finite. Reading stops where the trace does (see .stop)."""
        out = []
        for kind, text, events, end in self._read():
            if kind != "step":
                continue
            step = json.loads(text)
            step["events"] = [json.loads(e) for e in events]
            if end:
                end = json.loads(end)
                end["loss"] = _float(end["loss"])
                end["metrics"] = {k: _float(v) for k, v in end["metrics"].items()}
                step.update({k: v for k, v in end.items() if k not in ("type", "step")})
            out.append(step)
        return out

    def epochs(self):
        """Each epoch's logs (loss, accuracy, val_loss, ...), as dump prints them, each value a float."""
        out = []
        for kind, text, _, _ in self._read():
            if kind == "epoch":
                epoch = json.loads(text)
                epoch["logs"] = {k: _float(v) for k, v in epoch["logs"].items()}
                out.append(epoch)
        return out

    def losses(self):
        """The loss of every completed step, as a float64 numpy array (the engine's value, unrounded)."""
        self._read()
        return self._losses

    def footer(self):
        """The footer (completed, end_reason, counts, checkpoint index), or None: the run did not end cleanly."""
        for kind, text, _, _ in self._read():
            if kind == "footer":
                return json.loads(text)
        return None

    def checkpoints(self):
        """The count of steps done at each checkpoint, in order: 0 for the initial state, then one per
        checkpoint taken (the last: the final state), each a valid argument of checkpoint(). Those the trace
        can be read to from its start, as steps() holds the steps: none past damage."""
        return list(self._native.checkpoint_steps())

    def checkpoint(self, step):
        """The state after `step` steps (0: the initial weights) as {"dense_1.kernel": ndarray, ...}:
        parameters, then optimizer state. Float32 arrays that own the decompressed data (no copy). A step count
        the trace holds no checkpoint after raises CheckpointNotFoundError, a TraceError and a KeyError; one
        past damage in the trace raises TraceError, as export and replay refuse it."""
        step = _check.integer("checkpoint", "step", step, 0)
        try:
            tensors, _ = self._native.checkpoint(step)
        except TraceError as e:
            if " no checkpoint after " in str(e):
                raise CheckpointNotFoundError(str(e)) from None
            raise
        return tensors

    def __repr__(self):
        return f"<trainrr.Trace {self.path!r} seed={self.seed} level={self.header['level']}>"


def _float(value):
    """A loss or metric of dump's JSON as a Python float: a whole number (12) too, and the strings JSON
    writes an infinity or a NaN as ("inf", "-inf", "nan")."""
    return float(value)


def open(path):  # noqa: A001 - trainrr.open, as the issue names it
    """Opens a trace: trainrr.open("run.trr").losses(). Raises TraceError for a file that is not a
    readable trace (missing, foreign, damaged in its header, or from a newer trainrr)."""
    return Trace(path)


__all__ = ["Trace", "open", "TraceError"]
