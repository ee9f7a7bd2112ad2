"""replay, diff and bisect: the commands' reports as Python objects. `report.status` is one of reproduced,
identical, diverged, damaged, truncated; `first_divergence` and `cause` are None when nothing diverged. In a
notebook the report shows as the HTML page `--html` writes; str(report) is the text the command prints."""

import html
import json
import os
import threading

from . import _check
from ._errors import ConfigError, TrainrrError, _fit_arrays, choice_units, replay_call, report_terms, translated


class Facts:
    """A JSON object of the report, as attributes (first_divergence.step, cause.category, ...)."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __getitem__(self, key):
        return self.__dict__[key]

    def as_dict(self):
        return dict(self.__dict__)

    def __repr__(self):
        return "Facts(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class Report:
    """What replay, diff or bisect found. Attributes follow the JSON of `--json`: command, status,
    first_divergence (step, phase, kind, site, layer, op, kernel_recorded, kernel_replayed, checkpoint (the
    steps done when a state that differs was taken, else None), index, recorded,
    replayed, abs_diff, ulp, detail), cause (category, detail), trace_stop, environment_differences,
    config_differences (every configuration key that differs, "train.epochs: 2 -> 3"), facts, notes; exit_code is the command's (0 reproduced or identical, 1 diverged, 2 a damaged trace).
    The notes, the facts and the details of first_divergence and cause name the Python arguments where the
    command's words name its options ("keep_going=True trains on", "record with trainrr.record(...,
    level=\"op\")"), and bisect's replay_with is the trainrr.replay call; `json`, str(report) and html()
    are the command's own."""

    frame_height = 900  # pixels of a notebook's output cell the report's frame takes

    def __init__(self, native, trace=None):
        self._native = native
        values = json.loads(native.json())
        self.json = values
        self.command = values["command"]
        self.status = values["status"]
        terms = lambda text: report_terms(text, self.command)  # noqa: E731
        self.first_divergence = _python_facts(values["first_divergence"], terms)
        self.cause = _python_facts(values["cause"], terms)
        self.trace_stop = Facts(values["trace_stop"]) if values["trace_stop"] else None
        self.environment_differences = [Facts(d) for d in values["environment_differences"]]
        self.config_differences = values["config_differences"]
        self.facts = {key: _python_fact(key, value, values["facts"].get("trace", trace), terms)
                      for key, value in values["facts"].items()}
        self.notes = [terms(note) for note in values["notes"]]
        self.exit_code = native.exit_code
        self.damage = native.damage

    @property
    def reproduced(self):
        """True when status is 'reproduced' (replay, bisect: every step of the run replayed bit for bit) or
        'identical' (diff); False for any other status, 'truncated' included: a trace cut short is not a whole
        run reproduced, even when every step it holds matched."""
        return self.status in ("reproduced", "identical")

    def text(self):
        """What the command prints: for bisect, its stage lines and its `result:` line (the smallest set of
        choices to force, and the replay that forces them), then the report; for replay and diff, the
        report. str(report) is this text, but for the .npy files a fit on arrays saved for its run, in a
        temporary folder gone since, which it names as the arrays given to fit ("the x given to fit")."""
        return _fit_arrays(self._native.log + self._native.text())

    def html(self):
        """The self-contained HTML page of `--html` (the arrays a fit saved named as in text())."""
        return _fit_arrays(self._native.html())

    def save_html(self, path):
        """Writes the page of `html()` to `path` under the rule of `--html`: a new file, or an empty file or an
        earlier report (a page trainrr wrote), which it replaces whole, or not at all when the write fails.
        Any other file is refused (FileExistsError, naming it), so that a slip such as save_html("run.trr")
        cannot destroy a trace, a configuration, data or another page; a folder, a missing folder, a symbolic
        link to nothing or a folder or file that cannot be written raise IsADirectoryError,
        FileNotFoundError or PermissionError."""
        path = _path(path, "save_html")
        if not path:
            raise FileNotFoundError("save_html: needs a file path, got an empty one")
        from . import _trainrr

        problem, message = _trainrr.check_html_path(path)
        if problem:
            raise _PATH_ERRORS.get(problem, OSError)(message)
        # As --html writes it: whole or not at all, an earlier report kept when the write fails.
        failed = _trainrr.write_html(path, self.html())
        if failed:
            raise OSError(failed)

    def _repr_html_(self):
        """The page for a notebook's output cell, in a frame of its own: the report's style stays inside it
        and the notebook's stays out."""
        title = html.escape(f"trainrr {self.command}: {self.status}", quote=True)
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" title="{title}" '
                f'style="width:100%;height:{self.frame_height}px;border:1px solid #dde2e8;border-radius:8px">'
                f'</iframe>')

    def __str__(self):
        return self.text()

    def __bool__(self):
        # `if trainrr.replay(...):` would be true for every report, a divergence's and a damaged trace's too.
        raise TypeError(f"the truth value of a trainrr.Report is ambiguous (this one's status is "
                        f"{self.status!r}): use report.reproduced, true when the run was reproduced bit for bit "
                        f"(replay, bisect) or the traces are identical (diff), or report.status")

    def __repr__(self):
        first = self._native.text().split("\n", 1)[0]
        return f"<trainrr.Report {self.command}: {first}>"


def _python_facts(values, terms):
    if not values:
        return None
    # An element's values are floats, float("nan") or float("inf") too (the JSON holds those as strings).
    return Facts({k: terms(v) if k == "detail" and isinstance(v, str)
                  else float(v) if k in _FLOAT_FACTS and v is not None else v for k, v in values.items()})


_FLOAT_FACTS = {"recorded", "replayed", "abs_diff"}


_PATH_FACTS = {"trace", "a", "b"}  # a trace's path, as given


def _python_fact(key, value, trace, terms):
    """A fact of the report as Python reads it: bisect's replay_with as the trainrr.replay call, its choice
    units as force= names them, any other text in the Python calls' terms."""
    import shlex

    if not isinstance(value, str) or key in _PATH_FACTS:
        return value
    if key == "replay_with" and trace is not None:
        return replay_call(f"trainrr replay {shlex.quote(os.fspath(trace))} {value}") or terms(value)
    if key in ("minimal_forced_choices", "racy_choices_always_forced"):
        return choice_units(value)
    return terms(value)


# The problems of check_html_path, as the exceptions open() raises for their like.
_PATH_ERRORS = {"empty": FileNotFoundError, "folder": IsADirectoryError, "no_folder": FileNotFoundError,
                "cannot_write": PermissionError, "not_a_report": FileExistsError,
                "dangling_link": FileNotFoundError}


def _path(value, what):
    if not isinstance(value, (str, os.PathLike)):
        # An array is named by its type and shape, not printed whole.
        shape = getattr(value, "shape", None)
        shown = f"a {type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)[:200]
        hint = (" (a replay reads the data from a file: save the array with numpy.save and give its path)"
                if shape is not None and what.endswith("data") else "")
        raise ConfigError(f"{what}: must be a file path, got {shown}{hint}")
    return os.fspath(value)


def _main_thread():
    """Ctrl-C reaches Python's main thread only: there a replay or bisect stops at it (KeyboardInterrupt)."""
    return threading.current_thread() is threading.main_thread()


def replay(trace, force="all", overrides=(), data=None, allow_data_change=False, from_step=0, to_step=None,
           keep_going=False, element_detail=True):
    """Re-executes a recorded run, as `trainrr replay`: reproduced bit for bit, or the first divergence and
    its cause. force: "all", "none" or a list of rng, split, shuffle, loader, kernels (an empty list: none).
    overrides:
    {"runtime.threads": 1} or ["runtime.threads=1"], as --set. data: where the data file is now.
    Raises TraceError when the trace cannot be read or replayed here. Ctrl-C (in the main thread) stops the
    replay before its next step and raises KeyboardInterrupt."""
    from . import _trainrr

    if not isinstance(force, str):
        if isinstance(force, (list, tuple)) and all(isinstance(f, str) and f.strip() for f in force):
            force = ",".join(force) if force else "none"  # an empty list forces no choice
        else:
            raise ConfigError(f"replay: force must be 'all', 'none' or a list of rng, split, shuffle, loader, "
                              f"kernels, got {_check.shown(force)}")
    elif not force.strip():
        raise ConfigError("replay: force must be 'all', 'none' or a list of rng, split, shuffle, loader, kernels, "
                          "got an empty string")
    from_step = _check.integer("replay", "from_step", from_step, 0)
    if to_step is not None:
        to_step = _check.integer("replay", "to_step", to_step, 1)
        if to_step <= from_step:
            raise ConfigError(f"replay: to_step must be greater than from_step (the replay stops before step "
                              f"to_step), got from_step={from_step}, to_step={to_step}")
    sets = _check.overrides(overrides, "replay")
    trace = _path(trace, "replay: trace")
    data = _path(data, "replay: data") if data is not None else ""
    allow_data_change = _check.boolean("replay", "allow_data_change", allow_data_change)
    keep_going = _check.boolean("replay", "keep_going", keep_going)
    element_detail = _check.boolean("replay", "element_detail", element_detail)
    try:
        native = _trainrr.replay(trace, force, sets, data, allow_data_change, from_step,
                                 -1 if to_step is None else to_step, keep_going, element_detail, _main_thread())
    except TrainrrError as e:
        raise translated(e, "replay", sets) from None
    return Report(native)


def diff(a, b):
    """Two recorded runs compared without re-running them, as `trainrr diff`."""
    from . import _trainrr

    a, b = _path(a, "diff: a"), _path(b, "diff: b")
    try:
        native = _trainrr.diff(a, b)
    except TrainrrError as e:
        raise translated(e, "diff") from None
    return Report(native)


def bisect(trace, against=None, overrides=(), data=None):
    """Narrows a divergence to the smallest set of recorded choices that must be forced, as `trainrr bisect`:
    str(report) holds its stage lines and its `result:` line, as the command prints them. against: another
    trace of the same run; overrides and data as replay's. Ctrl-C (in the main thread) stops it before the
    next step of the replay it is in and raises KeyboardInterrupt."""
    from . import _trainrr

    sets = _check.overrides(overrides, "bisect")
    trace = _path(trace, "bisect: trace")
    against = _path(against, "bisect: against") if against is not None else ""
    data = _path(data, "bisect: data") if data is not None else ""
    try:
        native = _trainrr.bisect(trace, against, sets, data, _main_thread())
    except TrainrrError as e:
        raise translated(e, "bisect", sets) from None
    return Report(native, trace=trace)
