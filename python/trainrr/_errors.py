"""The exceptions trainrr raises: the engine's own message, under the kind of input that was wrong."""

import os


class TrainrrError(Exception):
    """Base class of trainrr's errors."""


class ConfigError(TrainrrError, ValueError):
    """A model, compile or fit argument, or a TOML configuration, that the engine does not take."""


class DataError(TrainrrError, ValueError):
    """Arrays or data files the run cannot train on: dtype, shape, a NaN, labels that do not suit the loss."""


class DeviceError(TrainrrError, RuntimeError):
    """compile(device="cuda") on a machine that cannot run it (no CUDA driver, no such GPU), or a fit whose
    model's tensors for a batch take more memory than this process can have: the arguments are right, the
    machine is what lacks it (the command's exit status 3, "cannot run here")."""


class TraceError(TrainrrError):
    """A trace that cannot be written, read or replayed here (a missing file, a damaged or foreign one)."""


# An argument that the trace has no place for: a TraceError, as the engine raises it, and the exception that
# Python raises for such an argument, as trainrr's checks of the arguments themselves do (ConfigError).
class TraceArgumentError(TraceError, ValueError):
    """replay(from_step=N) past the run's end: the trace's steps end before it (from_step=-1 is a ConfigError,
    a ValueError too)."""


class CheckpointNotFoundError(TraceError, KeyError, ValueError):
    """trace.checkpoint(n) where the trace holds no checkpoint after n steps (trace.checkpoints() lists those it
    holds): the KeyError of a lookup that finds nothing, and a ValueError, as checkpoint(-1)'s ConfigError is."""

    def __str__(self):
        return Exception.__str__(self)  # the message, not KeyError's repr of it


# A trace path that cannot take the recording: TraceErrors that are also the OSError that open() raises for
# the like, as save_html and to_config raise for theirs.
class TraceExistsError(TraceError, FileExistsError):
    """record=PATH names a file that is not a trace (data, a configuration): it is not overwritten."""


class TraceFolderNotFoundError(TraceError, FileNotFoundError):
    """record=PATH is in a folder that does not exist."""


class TraceIsADirectoryError(TraceError, IsADirectoryError):
    """record=PATH is a folder."""


class ConfigNotFoundError(ConfigError, FileNotFoundError):
    """Sequential.from_config(PATH) names a file that does not exist."""


# --- the engine's messages in Python's terms -------------------------------------------------------------
# The engine words its advice for the command line ("pass --data PATH"). Raised from Python, it names the
# argument of the call instead: one table, applied where a call hands an engine error on (translated()).
# Each row: a pattern, and its replacement (a string, or a function of the match and the call: "replay",
# "bisect", "diff", "fit", "from_config", "open").

# bisect (the command's too) has no --allow-data-change: it compares replays that must be able to reproduce.
_BISECT_DATA = ("; bisect replays only on the recorded data: give data= a copy of it (trainrr.replay(..., "
                "allow_data_change=True) replays on this one and names the data as the cause)")


def _override(m, call):
    key, value = m.group(1), m.group(2)
    shown = value if value.isupper() else _python_value(value)  # PATH: a placeholder, not a value
    if call == "fit":
        section, _, name = key.partition(".")
        if section == "runtime" and "." not in name:
            return f"compile({name}={shown})"
        if section == "train" and "." not in name:
            return f"fit({name}={shown})"
        return f"Sequential.from_config(..., overrides={{\"{key}\": {shown}}})"
    return f"overrides={{\"{key}\": {shown}}}"


def _python_value(text):
    """A --set value as Python writes it: 3, 0.5, True, "cpu" (a bare word is a string, as --set takes it)."""
    import json

    try:
        import tomllib

        value = tomllib.loads(f"v = {text}")["v"]
    except Exception:  # noqa: BLE001 - not TOML (or no tomllib): --set takes the bare word as a string
        value = text
    return json.dumps(value) if isinstance(value, str) else repr(value)


_CLI_WORDS = [
    (r"; pass --allow-data-change to replay anyway", "; pass allow_data_change=True to replay anyway"),
    (r"; bisect narrows a divergence of the run with the data it recorded: pass --data with that file "
     r"\(trainrr replay --data PATH --allow-data-change shows what the change does\)", _BISECT_DATA),
    (r" \(--data\) does not exist", " (data=) does not exist"),
    (r"\(--data replaces the samples' file; ", "(data= replaces the samples' file, x; "),
    (r"pass --data PATH, or record with --embed-data",
     "pass data=PATH, or record with trainrr.record(..., embed_data=True)"),
    (r"--data PATH", "data=PATH"),
    (r"^--against (.*?) is a recording of another run", r"against=\1 is a recording of another run"),
    (r"; diff compares different runs", "; trainrr.diff compares different runs"),
    (r"choose another trace path \(-o\)", "choose another trace path (record=...)"),
    (r"--set ([A-Za-z_][\w.\[\]]*)=(\S*?)(?=[\s),;]|$)", _override),
    (r"replay it without that --set", "replay it without that override"),
    (r"^step (\d+) is past the (run's end|end of the trace)",
     lambda m, call: (f"{call}: from_step={m.group(1)} is past the {m.group(2)}" if call == "replay" else m.group(0))),
    (r"\(--set ([A-Za-z_][\w.\[\]]*)\)", lambda m, call: f"(overrides={{\"{m.group(1)}\": ...}})"),
]

# Engine messages about the trace path a fit records to, and the OSError each is.
_TRACE_PATH_ERRORS = [
    (r": exists and is not a trainrr trace; refusing to overwrite it", TraceExistsError),
    (r": this is the run's [a-z ]+; writing the trace there would destroy it", TraceExistsError),
    (r": not a regular file \(it is a directory\)", TraceIsADirectoryError),
    (r": cannot open its folder .*: No such file or directory", TraceFolderNotFoundError),
]


def python_terms(message, call, sets=()):
    """`message`, an engine error raised from the call `call`, with the command's options named as the
    call's arguments. `sets`: the call's overrides, as the "key=value" strings the engine was given."""
    import re

    # The engine names an override's mistake as `--set` gives it: "--set KEY=VALUE: ..." or "PATH (--set):
    # ..." ("PATH (in the trace) (--set): ..." in a replay). From Python it is the overrides argument.
    for s in sets:
        if message.startswith(f"--set {s}: "):
            message = f"{call}: overrides: '{s}': {message[len(s) + 8:]}"
            break
    else:
        if call == "fit":  # a configuration's fit: its overrides are fit's arguments (train.epochs: epochs)
            message = re.sub(r"^.*? \(--set\): (train\.)?", "fit: ", message, count=1, flags=re.S)
        else:
            message = re.sub(r"^.*? \(--set\): ", f"{call}: overrides: ", message, count=1, flags=re.S)
    message = _fit_arrays(message)
    for pattern, replacement in _CLI_WORDS:
        if callable(replacement):
            message = re.sub(pattern, lambda m, r=replacement: r(m, call), message)
        else:
            message = re.sub(pattern, replacement, message)
    return message


def _fit_arrays(message):
    """The .npy files that a fit on arrays saved for its run (in a temporary folder, gone once the fit has set
    the run up; the trace embeds them), named by the arrays given to fit, which are what the caller knows. Such
    a folder is tempfile's, named as TemporaryDirectory(prefix="trainrr-") names one (8 characters after the
    prefix), and no longer exists: a folder of the user's own, which does, is named as it is."""
    import re
    import tempfile

    folder = re.escape(os.path.join(tempfile.gettempdir(), "trainrr-")) + r"[a-z0-9_]{8}"

    def named(m):
        return m.group(0) if os.path.exists(m.group(1)) else f"the {m.group(2)} given to fit"

    return re.sub("(" + folder + ")" + re.escape(os.sep) + r"([xy])\.npy\b", named, message)


def translated(error, call, sets=()):
    """The exception to raise for the engine's `error` from the call `call`: in the call's terms (as
    python_terms), and, for a trace path a fit records to, the OSError it is (FileExistsError, ...) as well as
    a TraceError. An override's mistake is a ConfigError, whatever the engine raised."""
    import re

    message = python_terms(str(error), call, sets)
    cls = type(error)
    if message.startswith(f"{call}: overrides: "):
        cls = ConfigError
    elif cls is TraceError and message.startswith(f"{call}: from_step="):
        cls = TraceArgumentError
    elif cls is TraceError:
        for pattern, path_error in _TRACE_PATH_ERRORS:
            if re.search(pattern, message):
                cls = path_error
                break
    return cls(message)


# --- a report's notes and facts in Python's terms --------------------------------------------------------
# The replayer words a report's notes for the command line too ("--keep-going trains on", "record with --level
# op"): read from Python, they name the arguments of trainrr.replay and trainrr.record, and a replay command
# it offers is the trainrr.replay call that makes the same replay.

def _quoted(text):
    import json

    return json.dumps(text)


def _force_argument(value):
    kinds = [k for k in value.split(",") if k]
    if len(kinds) == 1:
        return f"force={_quoted(kinds[0])}"
    return "force=[" + ", ".join(_quoted(k) for k in kinds) + "]"


def replay_call(command):
    """The trainrr.replay call that makes the replay of the command line `command` ("trainrr replay a.trr
    --force loader --to-step 7"); None for anything else."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 3 or words[:2] != ["trainrr", "replay"]:
        return None
    args, sets, i = [_quoted(words[2])], [], 3
    valued = {"--force": None, "--data": "data", "--from-step": "from_step", "--to-step": "to_step"}
    flags = {"--allow-data-change": "allow_data_change", "--keep-going": "keep_going"}
    while i < len(words):
        word = words[i]
        if word in flags:
            args.append(f"{flags[word]}=True")
            i += 1
        elif (word in valued or word == "--set") and i + 1 < len(words):
            value = words[i + 1]
            if word == "--force":
                args.append(_force_argument(value))
            elif word == "--set":
                key, eq, v = value.partition("=")
                if not eq:
                    return None
                sets.append(f"{_quoted(key)}: {_python_value(v)}")
            elif word == "--data":
                args.append(f"data={_quoted(value)}")
            else:
                args.append(f"{valued[word]}={value}")
            i += 2
        else:
            return None
    if sets:
        args.insert(2 if len(args) > 1 and args[1].startswith("force=") else 1,
                    "overrides={" + ", ".join(sets) + "}")
    return "trainrr.replay(" + ", ".join(args) + ")"


def _offered_command(m):
    call = replay_call(m.group(1))
    return f"`{call}`" if call else m.group(0)


def _set_key(m):
    return f"(overrides={{\"{m.group(1)}\": ...}})"


def _data_set_by_override(m):
    return f"data: {m.group(1)} (overrides={{{_quoted(m.group(2))}: {_quoted(m.group(1))}}}) is"


_REPORT_WORDS = [
    (r"`(trainrr replay [^`]*)`", _offered_command),
    (r"--keep-going", "keep_going=True"),
    (r"record with --level (step|layer|op)", r'record with trainrr.record(..., level="\1")'),
    (r"record with --embed-data", "record with trainrr.record(..., embed_data=True)"),
    (r"--force ([a-z]+(?:,[a-z]+)*)", lambda m: _force_argument(m.group(1))),
    (r"\(--data\)", "(data=)"),
    (r"^data: (.+?) \(--set ([A-Za-z_][\w.]*)\) is", _data_set_by_override),
    (r"\(--set ([A-Za-z_][\w.]*)\)", _set_key),
    (r"--(to|from)-step (\d+)", r"\1_step=\2"),
    (r"--allow-data-change", "allow_data_change=True"),
    (r"what export --step 0 gives", "what trainrr.open(...).checkpoint(0) gives"),
]


def report_terms(text, call):
    """A report's note (or fact) `text`, from the command `call` ("replay", "bisect", "diff"), with the
    command's options named as the arguments of the Python calls that take them."""
    import re

    for pattern, replacement in _REPORT_WORDS:
        text = re.sub(pattern, replacement, text)
    return python_terms(text, call)


def choice_units(text):
    """bisect's choice units ("seed, loader") as Python reads them: the unit "seed", the run's seed, is forced
    by force="rng", and named so."""
    return ", ".join("rng (the run's seed)" if unit == "seed" else unit for unit in text.split(", "))
