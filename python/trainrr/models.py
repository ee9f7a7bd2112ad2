"""Sequential: Keras' model shape (compile, fit, evaluate, predict) over trainrr's engine. A model and its
fit arguments are a run configuration: `to_config()` writes the TOML that `trainrr record` runs as the same
run, and `Sequential.from_config(path)` reads one."""

import hashlib
import numbers
import os
import re
import sys
import tempfile
import threading
import warnings

from . import _check, _data, _toml, losses, optimizers, recording
from ._errors import ConfigError, ConfigNotFoundError, DataError, DeviceError, TrainrrError, translated
from .layers import Layer

# Keras arguments of compile, fit, evaluate and predict the engine does not implement, with Keras' default of
# each: a call that passes the default on (wrapper code does) asks for nothing the engine lacks, and is taken.
_COMPILE_ONLY_KERAS = {"loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
                       "steps_per_execution": 1, "jit_compile": "auto", "auto_scale_loss": True,
                       "pss_evaluation_shards": 0}
_FIT_ONLY_KERAS = {"callbacks": None, "validation_data": None, "class_weight": None, "sample_weight": None,
                   "initial_epoch": 0, "steps_per_epoch": None, "validation_steps": None,
                   "validation_batch_size": None, "validation_freq": 1, "max_queue_size": 10, "workers": 1,
                   "use_multiprocessing": False}
_EVALUATE_ONLY_KERAS = {"sample_weight": None, "steps": None, "callbacks": None, "max_queue_size": 10, "workers": 1,
                        "use_multiprocessing": False}
_PREDICT_ONLY_KERAS = {"steps": None, "callbacks": None, "max_queue_size": 10, "workers": 1,
                       "use_multiprocessing": False}


# fit's arguments after verbose, in Keras' order: given by position, each is taken as Keras takes it.
_FIT_KERAS_POSITIONS = ("callbacks", "validation_split", "validation_data", "shuffle", "class_weight",
                        "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
                        "validation_batch_size", "validation_freq")


def _keras_positions(owner, shared, args, order, kwargs, mine, keras_only):
    """Arguments given by position past the `shared` ones the signature has in Keras' places, read as Keras
    reads them (`order`, Keras' names for the next positions): the call's own among them (`mine`: name -> the
    value given by name, None where none was) are returned with them; another that asks for nothing the engine
    lacks (Keras' default, as `keras_only` gives it) is taken; any other is refused, naming its position, its
    value and Keras' name for it. A Keras call's positional sample_weight or callbacks is never read as
    another argument."""
    if len(args) > len(order):
        raise TypeError(f"{owner}: too many positional arguments ({shared + len(args)}; Keras takes "
                        f"{shared + len(order)} by position)")
    out = dict(mine)
    for i, (key, value) in enumerate(zip(order, args)):
        if key in kwargs or (key in mine and mine[key] is not None):
            raise TypeError(f"{owner}: got multiple values for argument '{key}'")
        if key in mine:
            out[key] = value
            continue
        kwargs_one = {key: value}
        try:
            _keras_only(owner, kwargs_one, keras_only, [])
        except ConfigError:
            later = [k for k in order[i + 1:] if k in mine]
            shape = getattr(value, "shape", None)  # an array, by its type and shape, not printed whole
            shown = f"a {type(value).__name__} of shape {tuple(shape)}" if shape is not None else _check.shown(value)
            raise ConfigError(f"{owner}: argument {shared + i + 1} by position, {shown}, is Keras' "
                              f"{key}, which trainrr's engine does not take" +
                              (f" (give {', '.join(later)} by name)" if later else "")) from None
    return out


def _keras_only(owner, kwargs, keras_only, known):
    """Refuses each argument of `kwargs` but those Keras has, the engine lacks and the call gives at Keras'
    default, or unset: None (tf.keras 2's default of run_eagerly, jit_compile and steps_per_execution), and,
    where the default is None, an empty list or dict (no callbacks, no class weights)."""
    for key, value in kwargs.items():
        if key in keras_only:
            default = keras_only[key]
            if value is None:
                continue
            if key == "jit_compile" and value is False:  # no JIT compilation: the engine compiles none
                continue
            if default is None and isinstance(value, (list, tuple, dict)) and not value:
                continue
            if default is not None and _check.is_default(value, default):
                continue
            raise _check.unsupported_argument(owner, key, f"trainrr's engine has no such setting (only Keras' "
                                                          f"default, {default!r}, is taken)")
        raise _check.unknown_argument(owner, key, known)


_FIT_AGAIN = ("fit: this model has been fitted before; this fit starts again from the initial weights its seed "
              "draws, not from the current weights as Keras' fit would (a trainrr run cannot start from given "
              "weights). For the effect of continued training, fit once with the total number of epochs: given "
              "the earlier fit's seed (seed={seed}) and its other arguments again (each fit takes its own, the "
              "rest at their defaults), its first epochs repeat the earlier fit's (bit for bit when the run is "
              "deterministic, policy='deterministic').")
_PYTHON_CONFIG = "<python>"  # the name a run configuration written by this module goes by in messages


class History:
    """What fit returns, as Keras' History: `history` maps "loss", "accuracy", "val_loss", ... to one value
    per epoch; `epoch` lists the epochs (from 0); `trace` is the recorded trace, if any."""

    def __init__(self, logs, params, trace=None):
        self.history = {}
        for epoch in logs:
            for key, value in epoch:
                self.history.setdefault(key, []).append(value)
        self.epoch = list(range(len(logs)))
        self.params = params
        self.trace = trace

    def __repr__(self):
        return f"<trainrr.History epochs={len(self.epoch)} keys={list(self.history)}>"


class Sequential:
    """A stack of layers, as keras.Sequential:

        model = trainrr.Sequential([layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, epochs=10, batch_size=32, validation_split=0.1)
    """

    def __init__(self, layers=None, name=None):
        self.name = name
        self.layers = []
        self._compiled = None
        self._source = None  # (path, overrides, text read, its folder) of the configuration the model was read from
        self._data = None  # the configuration's [data] and [augment], for a model read from a file
        # The fit settings every fit starts from, its own arguments replacing them: Keras' defaults, or a
        # configuration's (from_config). Fit arguments are per call, as Keras' are: none carries over.
        self._defaults = {"epochs": 1, "batch_size": 32, "shuffle": True, "validation_split": 0.0, "seed": None}
        # The last fit's settings, run configuration (TOML text, its seed the one used), arrays (x, y) and
        # their digests, while the model is as that fit left it; compile and add drop it.
        self._last_fit = None
        self._seed_used = None  # the seed of the last fit (given, or drawn from the OS); None before any fit
        self._run = None
        layers = list(layers or [])
        # All checked before any is added: a model refused names none of them.
        for layer in layers:
            _check_layer(layer)
        _check_distinct(layers, "Sequential")
        for layer in layers:
            self.add(layer)

    # --- building -------------------------------------------------------------------------------------

    def add(self, layer):
        """Appends a layer (trainrr.layers.Dense, ...). The model then has to be fitted again: what an earlier
        fit trained is no longer this model."""
        _check_layer(layer)
        _check_distinct(self.layers + [layer], "Sequential")
        self.layers.append(layer)
        _take_layers(self)
        self._source = None
        self._changed()

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, threads=None, policy=None, device=None,
                tf32=None, **kwargs):
        """As Keras' compile (its default optimizer is rmsprop). metrics: None, ["accuracy"] or ["acc"]: the
        engine reports the loss, and accuracy for the two cross-entropies, under the name given (history keys
        acc and val_acc for "acc"). trainrr's own: threads (default 0: every
        core; at most 1024), policy ("default", "deterministic", "autotune" or "portable"), device ("cpu", the default,
        "cuda" or "cuda:N") and tf32 (on a GPU, matmuls in TF32; default False), the configuration's [runtime]."""
        _keras_only("compile", kwargs, _COMPILE_ONLY_KERAS,
                    ["optimizer", "loss", "metrics", "threads", "policy", "device", "tf32"])
        if loss is None:
            raise ConfigError("compile: loss is required (binary_crossentropy, sparse_categorical_crossentropy "
                              "or mse)")
        loss_name, from_logits = losses.get(loss)
        accuracy_names = _accuracy_names(metrics, loss_name)
        runtime = [(k, _check.plain(v)) for k, v in (("threads", threads), ("policy", policy), ("device", device),
                                                      ("tf32", tf32)) if v is not None]
        if runtime:
            _check.engine_check("compile", "runtime.", runtime=runtime)
        self._compiled = {"optimizer": optimizers.get(optimizer), "loss": loss_name, "from_logits": from_logits,
                          "accuracy": accuracy_names, "runtime": runtime}
        self._source = None
        self._changed()

    def _changed(self):
        """The model is not the one the last fit trained: nothing it trained or was trained with is kept."""
        self._run = None
        self._last_fit = None

    @classmethod
    def from_config(cls, path, overrides=()):
        """The model, compile settings, data and fit settings of a TOML run configuration (the file
        `trainrr record` takes). `overrides`: {"runtime.policy": "deterministic"} or "key=value" strings, as
        `--set` (as replay's). fit() without arrays then
        trains on the configuration's data, as `trainrr record PATH` does, scaled as its data.scale says;
        arrays handed to fit, evaluate or predict are taken as they are, unscaled."""
        from . import _trainrr

        path = os.fspath(path)
        sets = _check.overrides(overrides, "from_config")
        try:
            c = _trainrr.load_config(path, sets)
        except TrainrrError as e:
            error = translated(e, "from_config", sets)
            if str(error).startswith(f"{path}: cannot open the configuration: No such file or directory"):
                # As open() says of a missing file: a FileNotFoundError, and a ConfigError too.
                error = ConfigNotFoundError(f"from_config: {error}")
            raise error from None
        model = cls([Layer.from_spec(spec) for spec in c["layers"]])
        model.compile(optimizer=optimizers.Optimizer.from_spec(c["optimizer"]),
                      loss=_loss_object(c["train"]["loss"]) if c["train"]["from_logits"] else c["train"]["loss"],
                      metrics=["accuracy"] if c["train"]["loss"] != "mse" else None,
                      threads=c["threads"], policy=c["policy"],
                      # The configuration's device and TF32 setting, where it gives other than the defaults.
                      device=c["device"] if c["device"] != "cpu" else None, tf32=True if c["tf32"] else None)
        train = c["train"]
        model._defaults = {"epochs": train["epochs"], "batch_size": train["batch_size"], "shuffle": train["shuffle"],
                           "validation_split": train["validation_split"], "seed": c["seed"]}
        model._data = {"data": c["data"], "augment": c["augment"]}
        # What fit trains: the text read here, not the file as it may be by then (edited in a notebook, or a
        # pipe, which cannot be read twice), so that the model, to_config and the run agree; named by its path
        # as it is now, whatever folder fit is called from. Relative data paths resolve against its folder; one
        # read from a pipe or through /dev or /proc has none (load_config took only absolute data paths).
        absolute = os.path.abspath(path)
        no_folder = not os.path.isfile(path) or absolute.startswith(("/dev/", "/proc/"))
        model._source = (absolute, sets, c["text"], "" if no_folder else os.path.dirname(absolute))
        return model

    # --- training -------------------------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=None, verbose="auto", *args, validation_split=None,
            shuffle=None, record=None, seed=None, **kwargs):
        """Trains the model, as Keras' fit: epochs (default 1), batch_size (32), validation_split (the last
        fraction of the rows, evaluated each epoch), shuffle (True). Each argument is this call's, as in
        Keras: one not given takes its default (a model read by from_config: its configuration's setting),
        not an earlier fit's value. x: real numbers, (rows, features...);
        a C-contiguous float32 array is saved for the run as it is, and kept uncopied for to_config (which
        refuses to write it once changed in place), other dtypes are first converted to float32 (a copy).
        y: one label per row (one target per row for mse).

        record: a trace path (or a trainrr.record(...) object) to record the run to; inside a
        `with trainrr.record(...)` block the run is recorded there. seed: the run's seed (None: the
        recording's, the configuration's, or one drawn from the OS and recorded). The arrays are saved as
        .npy files that the trace embeds, so that trainrr.replay needs the trace alone.

        Every fit is a run of its own, from the initial weights its seed draws: a second fit of this model
        trains it again from there, not from its current weights as Keras' fit does, and warns so
        (UserWarning). For the effect of continued training, fit once with the total number of epochs.

        Ctrl-C stops the run after the current step; the trace then holds every step before it, and
        KeyboardInterrupt is raised."""
        # Keras' next positions: callbacks, validation_split, validation_data, shuffle, ...
        mine = _keras_positions("fit", 5, args, _FIT_KERAS_POSITIONS, kwargs,
                                {"validation_split": validation_split, "shuffle": shuffle}, _FIT_ONLY_KERAS)
        validation_split, shuffle = mine["validation_split"], mine["shuffle"]
        _keras_only("fit", kwargs, _FIT_ONLY_KERAS, ["x", "y", "batch_size", "epochs", "verbose",
                                                       "validation_split", "shuffle", "record", "seed"])
        if self._compiled is None:
            raise ConfigError("fit: the model must be compiled first (model.compile(optimizer=..., loss=...))")
        if not self.layers:
            raise ConfigError("fit: the model has no layers")
        _check_distinct(self.layers, "fit")
        _take_layers(self)  # named as the engine will name them, should model.layers have been changed
        rec = _recording(record)
        given = _check_fit_values({"epochs": epochs, "batch_size": batch_size, "validation_split": validation_split,
                                   "shuffle": shuffle, "seed": seed})
        if rec is not None:
            if given["seed"] is not None and rec.seed is not None and given["seed"] != rec.seed:
                raise ConfigError(f"fit: seed={given['seed']} and the recording's seed={rec.seed} differ")
            given["seed"] = given["seed"] if given["seed"] is not None else rec.seed
        settings = dict(self._defaults)
        settings.update({k: v for k, v in given.items() if v is not None})
        log, progress = _log_stream(verbose, "fit")
        # Without metrics the lines say the loss only, as history has it and Keras prints it.
        if log is not None and self._compiled["accuracy"] != ["accuracy"]:
            log = _MetricNames(log, self._compiled["accuracy"])

        if x is None and y is not None:
            raise DataError("fit: y without x")
        if x is None and self._data is None:
            raise DataError("fit: x and y are required (a model read by Sequential.from_config trains on its "
                            "configuration's data without them)")
        if rec is not None:
            rec.check_unused()
            recording.check_one_trace(rec, "fit")
        with tempfile.TemporaryDirectory(prefix="trainrr-") as folder:
            if x is not None:
                xs = _data.features(x)
                ys = _data.labels(y, xs.shape[0], loss=self._compiled["loss"])
                _data.save(folder, xs, ys)
                arrays = (xs, ys)
                # A C-contiguous float32 x (or y) is the caller's own array, kept uncopied: the digests of
                # what was saved let to_config tell whether it still holds what this fit trains on.
                digests = (_digest(xs), _digest(ys))
            else:
                arrays = digests = None
            if arrays is None and self._source is not None:
                # The configuration file as `trainrr record FILE --set ...` runs it: the same run, the same trace.
                path, overrides, text, base_dir = self._source
                overrides = overrides + _overrides(given)
                source = dict(file="", text=text, name=path, base_dir=base_dir, overrides=overrides)
            else:
                text = self._config_text(settings, arrays is not None)
                source = dict(file="", text=text, name=_PYTHON_CONFIG, base_dir=folder, overrides=[])
            record_settings = rec.settings(embed_data=arrays is not None) if rec is not None else None
            try:
                from . import _trainrr

                run = _trainrr.Run(**source, record=record_settings, log=log, progress=progress,
                                   warnings=_Warnings(sys.stderr) if arrays is not None else sys.stderr)
            except TrainrrError as e:
                if arrays is not None:
                    _check_class_labels(str(e), arrays[1], self._compiled["loss"])
                raise _fit_error(type(e)(_python_message(str(e), folder, arrays is not None))) from None
        # Said once the run is set up: a fit refused before it trains (bad arrays, a bad argument) starts nothing.
        if self._seed_used is not None:
            warnings.warn(_FIT_AGAIN.format(seed=self._seed_used), UserWarning, stacklevel=2)
        if rec is not None:
            rec.claim()
        self._run = run
        self._seed_used = run.seed
        self._last_fit = {"settings": settings,
                          "text": self._config_text(dict(settings, seed=run.seed), arrays is not None),
                          "arrays": arrays, "digests": digests}
        try:
            stopped = run.fit(catch_sigint=threading.current_thread() is threading.main_thread())
        except TrainrrError as e:
            raise _fit_error(e) from None
        if rec is not None:
            rec.trace = rec.path
            rec.bytes = run.trace_bytes
            rec.seed = run.seed
        if stopped != "completed":
            where = f"; the trace {rec.path} holds every step before it" if rec is not None else ""
            raise KeyboardInterrupt(f"fit: {stopped}{where}")
        history = [_named_metrics(epoch, self._compiled["accuracy"]) for epoch in run.history()]
        params = {"epochs": settings["epochs"], "steps": run.steps_per_epoch, "verbose": verbose}
        return History(history, params, trace=rec.path if rec is not None else None)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", *args, return_dict=None, **kwargs):
        """The loss (and accuracy, when compiled with metrics=["accuracy"] or ["acc"], under that name) on x
        and y, in batches of the last fit's batch_size; without x, on the test split of a configuration's data (data.test_fraction), scaled
        as its training rows are. x and y are copied into the engine's tensors (as float32), as they are:
        a configuration's data.scale is not applied to them. return_dict: a dict keyed by the metrics' names
        (default None: False, as Keras' default)."""
        # Keras' next positions: sample_weight, steps, callbacks, return_dict.
        return_dict = _keras_positions("evaluate", 4, args, ("sample_weight", "steps", "callbacks", "return_dict"),
                                       kwargs, {"return_dict": return_dict}, _EVALUATE_ONLY_KERAS)["return_dict"]
        _keras_only("evaluate", kwargs, _EVALUATE_ONLY_KERAS, ["x", "y", "batch_size", "verbose", "return_dict"])
        return_dict = _check.boolean("evaluate", "return_dict", False if return_dict is None else return_dict)
        run = self._trained("evaluate")
        fit_batch = self._last_fit["settings"]["batch_size"]
        if batch_size is not None and batch_size != fit_batch:
            raise _check.unsupported_argument("evaluate", "batch_size",
                                              f"evaluation runs in the fit's batches of {fit_batch}")
        if x is None:
            if y is not None:
                raise DataError("evaluate: y without x")
            if not run.has_test:
                raise DataError("evaluate: x and y are required (this run has no test split)")
            result = run.evaluate_test()
        else:
            xs = _data.features(x, sample_shape=run.sample_shape)
            ys = _data.labels(y, xs.shape[0], loss=run.loss)
            _data.check_labels(ys, run.loss, self._outputs(xs))
            result = run.evaluate(xs, ys)
        out = {"loss": result["loss"]}
        for name in self._compiled["accuracy"]:
            out[name] = result["accuracy"]
        if _verbosity(verbose, "evaluate"):
            print(f"{result['rows']} rows - " + " - ".join(f"{k}: {v:.4f}" for k, v in out.items()))
        if return_dict:
            return out
        return out["loss"] if len(out) == 1 else list(out.values())

    def predict(self, x, batch_size=None, verbose="auto", *args, **kwargs):
        """The model's outputs for x, one row per sample (float32; numpy owns the engine's result, no copy).
        x is copied once into the engine's input tensor (which owns its memory), converted to float32 on the
        way when it is another dtype, and otherwise taken as it is: a configuration's data.scale is not
        applied to it."""
        _keras_positions("predict", 3, args, ("steps", "callbacks"), kwargs, {}, _PREDICT_ONLY_KERAS)
        _keras_only("predict", kwargs, _PREDICT_ONLY_KERAS, ["x", "batch_size", "verbose"])
        # Outputs do not depend on it (each row's is its own), but a value no batch size is, is a mistake.
        if batch_size is not None:
            _check.integer("predict", "batch_size", batch_size, 1)
        run = self._trained("predict")
        _verbosity(verbose, "predict")  # checked as Keras' is; predict prints nothing
        return run.predict(_data.features(x, sample_shape=run.sample_shape))

    def get_weights(self):
        """The weights as numpy arrays, layer by layer in model order and in Keras' order within a layer:
        a Dense layer's kernel (inputs, units) and bias, a BatchNormalization layer's gamma, beta, moving
        mean and moving variance."""
        by_layer = {}
        for name, value in self._trained("get_weights").weights().items():
            by_layer.setdefault(name.rsplit(".", 1)[0], []).append(value)
        return [value for values in by_layer.values() for value in values]

    def summary(self, print_fn=None):
        """Prints the model as the command's run header does: a line per layer with its name, type, output
        shape and number of weights (dense_1 (Dense) -> (32,), 288 params), counted as Keras counts them:
        a BatchNormalization layer's moving mean and variance too; then the totals, as Keras prints them
        (Total params, Trainable params, Non-trainable params: the moving statistics). The input shape comes
        from the data, so it needs a fit first (ConfigError before). print_fn: called with the text in place
        of print, once with the whole text, as Keras 3 calls it (default None: print)."""
        text = self._trained("summary").summary()
        (print_fn or print)(text.rstrip("\n"))  # once, with the whole text, as Keras 3 calls it

    # --- configuration --------------------------------------------------------------------------------

    def to_config(self, path=None):
        """The model as a TOML run configuration. After a fit: exactly the run that fit trained (this model,
        the compile settings and fit arguments it ran with, its seed, the one given or the one drawn from
        the OS). Before any fit, or after a compile or add since the last fit (which leave the model
        untrained, as predict says): the layers and compile settings as they are, with Keras' fit defaults
        and no seed (a model read by from_config: its configuration's fit settings and data).

        With `path`, also writes it there, and the last fit's arrays beside it (x.npy, y.npy), so that
        `trainrr record PATH` runs the same run; folders missing on the way are created. A file already
        there is replaced only when it is empty or a trainrr run configuration (TOML with a [model] and only a
        configuration's top-level keys: never a pyproject.toml); x.npy and y.npy only when empty, when
        they hold the very bytes to be written, or when a to_config of this session wrote them (and they
        still hold what it wrote), so that a data set of yours under those names is never overwritten. Any
        other raises FileExistsError, naming it, and a folder IsADirectoryError, before anything is
        written. fit keeps a C-contiguous float32 x or y as the caller's own array, uncopied: one changed in
        place since the fit (x *= 2) raises DataError, naming it, before anything is written, since its
        .npy file would not hold what the fit trained on."""
        if self._last_fit is not None:
            text, arrays = self._last_fit["text"], self._last_fit["arrays"]
        else:
            text, arrays = self._config_text(self._defaults, False), None
        if path is not None:
            if arrays is not None:
                _check_unchanged(arrays, self._last_fit["digests"])
            path = _path(path, "to_config")
            folder = os.path.dirname(os.path.abspath(path))
            # Everything is checked before anything is written: a slip (to_config("run.trr")) destroys nothing.
            if os.path.isdir(path):
                raise IsADirectoryError(f"to_config: {path} is a directory; a configuration needs a file path "
                                        f"({os.path.join(path, 'run.toml')}, say)")
            _replaceable(path, _is_run_config, "a trainrr run configuration")
            written = []
            if arrays is not None:
                for name in (_data.X_FILE, _data.Y_FILE):
                    if os.path.abspath(path) == os.path.join(folder, name):
                        raise FileExistsError(f"to_config: {path}: the last fit's arrays are written beside the "
                                              f"configuration as {_data.X_FILE} and {_data.Y_FILE}: give the "
                                              f"configuration another name (run.toml)")
                for name, array in zip((_data.X_FILE, _data.Y_FILE), arrays):
                    written.append(_replaceable_array(os.path.join(folder, name), array))
            os.makedirs(folder, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            if arrays is not None:
                _data.save(folder, *arrays)
                for file, digest in written:
                    _ARRAYS_WRITTEN[os.path.realpath(file)] = digest
        return text

    def _config_text(self, settings, arrays):
        if self._compiled is None:
            raise ConfigError("to_config: the model must be compiled first")
        lines = []
        if settings.get("seed") is not None:
            lines.append(f"seed = {settings['seed']}")
            lines.append("")
        if arrays:
            _toml.table(lines, "[data]", [("path", _data.X_FILE), ("labels", _data.Y_FILE)])
            lines.append("")
        elif self._data is not None:
            _toml.table(lines, "[data]", _data_items(self._data["data"]))
            lines.append("")
        augment = [(k, v) for k, v in self._data["augment"].items() if v] if self._data is not None else []
        if augment:
            _toml.table(lines, "[augment]", augment)
            lines.append("")
        for layer in self.layers:
            _toml.table(lines, "[[model.layers]]", layer.items())
            lines.append("")
        c = self._compiled
        train = [("epochs", settings["epochs"]), ("batch_size", settings["batch_size"]),
                 ("shuffle", settings["shuffle"]), ("loss", c["loss"])]
        if c["from_logits"]:
            train.append(("from_logits", True))
        if settings["validation_split"]:
            train.append(("validation_split", settings["validation_split"]))
        _toml.table(lines, "[train]", train)
        lines.append("")
        _toml.table(lines, "[train.optimizer]", c["optimizer"].items())
        if c["runtime"]:
            lines.append("")
            _toml.table(lines, "[runtime]", c["runtime"])
        return "\n".join(lines) + "\n"

    # --- helpers --------------------------------------------------------------------------------------

    def _trained(self, what):
        if self._run is None:
            since = " since its last compile or add" if self._seed_used is not None else ""
            raise ConfigError(f"{what}: the model has not been trained{since} (fit builds it: its input shape "
                              f"comes from the data)")
        return self._run

    def _outputs(self, x):
        out = self._run.predict(x[:1])
        return out.shape[-1] if out.ndim > 1 else 1

    def __repr__(self):
        return f"<trainrr.Sequential layers={self.layers!r}>"


def _path(value, what):
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{what}: path must be a file path, got {_check.shown(value)}")
    value = os.fspath(value)
    if not value:
        raise FileNotFoundError(f"{what}: needs a file path, got an empty one")
    return value


def _replaceable(path, kind_of, kind):
    """Refuses (FileExistsError) to replace a file that is not empty and not of the kind to_config writes."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return  # absent, or a folder or a device, which open() names
        with open(path, "rb") as f:
            head = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError:
        return  # not readable: open() for writing says why, if it cannot write it
    if not kind_of(head):
        raise FileExistsError(f"to_config: {path} exists and is not {kind}: refusing to overwrite it")


_MAX_CONFIG_BYTES = 1 << 20  # as the engine reads a configuration

# The .npy files to_config wrote in this process: their real paths, and the digest of the bytes written, so
# that a later to_config replaces them while they still hold those bytes.
_ARRAYS_WRITTEN = {}


class _DigestWriter:
    """A file for numpy.save that keeps only the digest and the size of what is written to it."""

    def __init__(self):
        self.hash = hashlib.blake2b(digest_size=32)
        self.size = 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)


def _npy_digest(array):
    """The digest and size of the .npy file numpy.save writes of `array`."""
    import numpy as np

    out = _DigestWriter()
    np.save(out, array, allow_pickle=False)
    return out.hash.digest(), out.size


def _file_digest(path):
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def _replaceable_array(path, array):
    """Refuses (FileExistsError) to replace a .npy file that holds anything but `array` as numpy.save writes
    it, unless a to_config of this process wrote it and it still holds what was written: a data set of the
    user's under the name x.npy or y.npy is never overwritten. Returns (path, the digest of what is to be
    written there)."""
    digest, size = _npy_digest(array)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return path, digest  # absent, or a folder or a device, which open() names
        with open(path, "rb") as f:
            head = f.read(8)
        now = _file_digest(path) if os.path.getsize(path) == size or os.path.realpath(path) in _ARRAYS_WRITTEN \
            else None
    except OSError:
        return path, digest  # not readable: numpy.save says why, if it cannot write it
    if not _is_npy(head):
        raise FileExistsError(f"to_config: {path} exists and is not a .npy file: refusing to overwrite it")
    if now is not None and (now == digest or _ARRAYS_WRITTEN.get(os.path.realpath(path)) == now):
        return path, digest
    name = os.path.basename(path)
    raise FileExistsError(f"to_config: {path} exists and holds another array than the last fit's "
                          f"{name[:-len('.npy')]}, and no to_config of this session wrote it: refusing to "
                          f"overwrite it (it may be a data set of yours). Move it away, or give to_config a path "
                          f"in another folder: the arrays are written beside the configuration, as "
                          f"{_data.X_FILE} and {_data.Y_FILE}")


# The top-level keys of a run configuration (engine/config.cc): a TOML file with any other, or without a model,
# is some other tool's (a pyproject.toml) and is never replaced.
_CONFIG_KEYS = {"seed", "data", "augment", "model", "train", "runtime", "distributed"}


def _is_run_config(head):
    """True when the bytes are a trainrr run configuration: TOML whose top-level keys are all a
    configuration's, with a [model] (every configuration to_config writes has one)."""
    if len(head) > _MAX_CONFIG_BYTES:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        import tomllib
    except ImportError:  # Python before 3.11: no TOML reader, so nothing is taken for a configuration
        return False
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return "model" in table and set(table) <= _CONFIG_KEYS


def _is_npy(head):
    return head.startswith(b"\x93NUMPY")


def _loss_object(name):
    return {"binary_crossentropy": losses.BinaryCrossentropy,
            "sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy}[name](from_logits=True)


def _accuracy_names(metrics, loss):
    """The names under which the accuracy is reported, as given ("acc" or "accuracy", as Keras names a
    metric), in order; empty without it."""
    if metrics is None:
        return []
    if isinstance(metrics, dict):
        raise ConfigError(f"compile: metrics: a dict (metrics per output, {metrics!r}) is not supported: the model "
                          f"has one output; give a list (metrics=['accuracy'])")
    if isinstance(metrics, str):
        metrics = [metrics]
    names = []
    for m in metrics:
        if isinstance(m, str) and m in ("accuracy", "acc"):
            if loss == "mse":
                raise ConfigError(f"compile: metrics: {m!r} does not apply to loss 'mse' (it reports the "
                                  f"loss alone)")
            if m not in names:
                names.append(m)
        else:
            raise ConfigError(f"compile: metrics: {m!r} is not supported (the engine reports the loss, and "
                              f"'accuracy' for the cross-entropies)")
    return names


def _named_metrics(logs, names):
    """An epoch's logs with the engine's accuracy (accuracy, val_accuracy) under the names compile was given
    (acc, val_acc for "acc"), or without it."""
    out = []
    for key, value in logs:
        if key.endswith("accuracy"):
            prefix = key[:-len("accuracy")]
            out.extend((prefix + name, value) for name in names)
        else:
            out.append((key, value))
    return out


def _digest(a):
    return hashlib.blake2b(memoryview(a).cast("B")).digest()


def _check_unchanged(arrays, digests):
    """The fit's arrays, which may be the caller's own, still hold what the fit trained on."""
    changed = [name for name, a, d in zip(("x", "y"), arrays, digests) if _digest(a) != d]
    if changed:
        which = " and ".join(changed)
        files = " and ".join(f"{n}.npy" for n in changed)
        copies = " and ".join(f"{n}.copy()" for n in changed)
        verb = "have" if len(changed) > 1 else "has"
        raise DataError(f"to_config: {which} {verb} changed since the fit (in place): fit kept the array it was "
                        f"given, uncopied, and its values are no longer those the fit trained on; {files} "
                        f"would not hold the rows the fit trained on. Call to_config before changing the "
                        f"array, give fit a copy ({copies}) to change the original freely, or fit again on the "
                        f"array as it now is")


def _check_distinct(layers, where):
    """One layer object in two places of a model would be two layers with weights of their own, not one
    shared layer as in Keras: refused."""
    for i, layer in enumerate(layers):
        for j in range(i):
            if layers[j] is layer:
                raise ConfigError(f"{where}: the same layer object ({layer!r}) is at layers[{j}] and layers[{i}]: "
                                  f"trainrr shares no weights between two places of a model; make a layer for "
                                  f"each place")


def _check_layer(layer):
    if not isinstance(layer, Layer):
        raise ConfigError(f"Sequential: {layer!r} is not a trainrr layer (trainrr.layers.Dense, ...)")


def _take_layers(model):
    """Gives each layer of `model` made without a name the one the engine gives it there. A layer named so by
    another model keeps that name here, as one given: no model renames a layer under another that holds it."""
    for layer in model.layers:
        if layer._engine_name is not None and layer._named_by != id(model) and not layer._given.get("name"):
            layer._kept_name = layer._engine_name
        elif layer._named_by == id(model):
            layer._kept_name = None
    _name_layers(model.layers, model)


def _name_layers(layers, model):
    """Gives each layer made without a name the one the engine gives it (engine/model.cc, layer_names): its
    type in snake case and a running number among the unnamed layers of that type (dense_1, dense_2, ...),
    skipping a name another layer is given (or keeps, from another model)."""
    given = {layer._fixed_name() for layer in layers if layer._fixed_name()}
    counts = {}
    for layer in layers:
        if layer._fixed_name():
            continue
        base = _SNAKE_NAMES.get(layer.type) or re.sub(r"(?<!^)([A-Z])", r"_\1", layer.type).lower()
        counts[base] = counts.get(base, 0) + 1
        while f"{base}_{counts[base]}" in given:
            counts[base] += 1
        layer._engine_name = f"{base}_{counts[base]}"
        layer._named_by = id(model)


_SNAKE_NAMES = {"Conv2D": "conv2d", "MaxPool2D": "max_pooling2d", "MaxPooling2D": "max_pooling2d",
                "BatchNormalization": "batch_normalization"}


def _recording(record):
    if record is None:
        return recording.current()
    if isinstance(record, recording.Recording):
        return record
    if isinstance(record, (str, os.PathLike)):
        return recording.Recording(record)
    raise ConfigError(f"fit: record must be a trace path or trainrr.record(...), got {record!r}")


# The engine's words for labels beyond the model's outputs: a configuration's model to change, it says.
_FEWER_OUTPUTS = re.compile(r"the model outputs (\d+) values? per sample \(one score per class\) but the labels go up to")


def _check_class_labels(message, y, loss):
    """For a fit on arrays, labels beyond the model's outputs are y's: a DataError naming the first such row,
    in evaluate's words."""
    m = _FEWER_OUTPUTS.search(message)
    if m:
        _data.check_labels(y, loss, int(m.group(1)))


def _check_fit_values(given):
    """The fit arguments given, as plain Python values (numpy scalars taken as the numbers they hold)."""
    checks = {"epochs": lambda v: _check.integer("fit", "epochs", v, 1),
              "batch_size": lambda v: _check.integer("fit", "batch_size", v, 1),
              "validation_split": lambda v: _check.real("fit", "validation_split", v, lambda f: 0 <= f < 1,
                                                        "a number in [0, 1)"),
              "shuffle": lambda v: _check.boolean("fit", "shuffle", v),
              "seed": lambda v: _check.integer("fit", "seed", v, 0, _check.MAX_SEED)}
    return {k: checks[k](v) if v is not None else None for k, v in given.items()}


def _overrides(given):
    keys = {"epochs": "train.epochs", "batch_size": "train.batch_size", "validation_split": "train.validation_split",
            "shuffle": "train.shuffle", "seed": "seed"}
    return [f"{keys[k]}={_toml.value(v)}" for k, v in given.items() if v is not None]


def _data_items(d):
    items = [("source", d["source"])]
    if d["source"] == "synthetic":
        items += [("shape", d["shape"]), ("classes", d["classes"]), ("samples", d["samples"])]
    else:
        items.append(("path", d["path"]))
        items.append(("label", d["label"]) if d["source"] == "csv" else ("labels", d["labels"]))
    if d["reshape"]:
        items.append(("reshape", d["reshape"]))
    if d["test_fraction"]:
        items += [("test_fraction", d["test_fraction"]), ("split", d["split"])]
        if d["stratify"]:
            items.append(("stratify", True))
    if d["scale"] != "none":
        items.append(("scale", d["scale"]))
    return items


def _verbosity(verbose, owner):
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ConfigError(f"{owner}: verbose must be 'auto', 0, 1 or 2, got {_check.shown(verbose)}")
    return int(verbose)


def _log_stream(verbose, owner):
    """Keras' verbosity: 0 quiet, 1 a progress bar (on a terminal) and a line per epoch, 2 the lines only."""
    v = _verbosity(verbose, owner)
    if v == 0:
        return None, False
    isatty = getattr(sys.stdout, "isatty", None)
    return sys.stdout, v == 1 and bool(isatty and isatty())


class _MetricNames:
    """The epoch lines, to `stream`, with the accuracy under the names compile was given (acc: ...), or
    without it when compile was given no metric."""

    _ACCURACY = re.compile(r" - (val_)?accuracy: (\S+)")

    def __init__(self, stream, names):
        self._stream = stream
        self._names = names

    def write(self, text):
        self._stream.write(self._ACCURACY.sub(
            lambda m: "".join(f" - {m.group(1) or ''}{name}: {m.group(2)}" for name in self._names), text))

    def flush(self):
        self._stream.flush()


_LOSS_CLASSES = {"binary_crossentropy": "BinaryCrossentropy",
                 "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy"}
_OUTPUT_ACTIVATIONS = {"binary_crossentropy": "sigmoid", "sparse_categorical_crossentropy": "softmax"}


def _logits_not_probabilities(m):
    loss = m.group(1)
    return (f"compile(loss=losses.{_LOSS_CLASSES[loss]}(from_logits=True)) takes the outputs as logits, but "
            f"the model's output comes from a {m.group(2)} activation: its outputs are probabilities, not logits "
            f"(give loss='{loss}', whose from_logits is False)")


def _probabilities_not_logits(m):
    loss = m.group(1)
    if m.group(2) != "linear":  # a relu's or a tanh's outputs are no logits either
        return (f"compile(loss='{loss}') takes the outputs as probabilities (from_logits=False), but the model's "
                f"last activation is {m.group(2)} (end the model in activation='{_OUTPUT_ACTIVATIONS[loss]}', or in "
                f"a linear output with loss=losses.{_LOSS_CLASSES[loss]}(from_logits=True))")
    return (f"compile(loss='{loss}') takes the outputs as probabilities (from_logits=False), but the model's "
            f"last activation is {m.group(2)} (give loss=losses.{_LOSS_CLASSES[loss]}(from_logits=True), or end "
            f"the model in activation='{_OUTPUT_ACTIVATIONS[loss]}')")


class _Warnings:
    """The run's warnings, to `stream`, for a fit on arrays: its advice in the fit's terms (compile's
    arguments, loss objects, x), not in keys of a configuration file that such a fit has none of."""

    _REWRITES = [
        (re.escape("(a smaller learning rate or scaled data, data.scale, may help)"),
         "(a smaller learning rate or standardized x may help)"),
        (re.escape("runtime.tf32 = true has no effect on the CPU"), "compile(tf32=True) has no effect on the CPU"),
        (r"(binary_crossentropy|sparse_categorical_crossentropy) with train\.from_logits = true, but the model's "
         r"output comes from a (\w+) activation: its outputs are probabilities, not logits "
         r"\(set from_logits = false\)", _logits_not_probabilities),
        (r"(binary_crossentropy|sparse_categorical_crossentropy) with train\.from_logits = false takes the "
         r"outputs as probabilities, but the model's last activation is (\w+) \((?:set from_logits = true, or )?end "
         r"in \w+(?:, or in a linear output with from_logits = true)?\)", _probabilities_not_logits),
    ]
    _REWRITES = [(re.compile(pattern), replacement) for pattern, replacement in _REWRITES]

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        for pattern, replacement in self._REWRITES:
            text = pattern.sub(replacement, text)
        self._stream.write(text)

    def flush(self):
        self._stream.flush()


_KEYS = [(re.compile(r"\bmodel\.layers\[(\d+)\]"), r"layers[\1]"), (re.compile(r"\btrain\.optimizer\."), "optimizer."),
         # compile's arguments, as compile takes them: runtime.device = "cuda" is compile(device="cuda").
         (re.compile(r"\bruntime\.(threads|policy|device|tf32) = (\"[^\"]*\"|\S+?)(?=[\s:,;)]|$)"), r"compile(\1=\2)"),
         (re.compile(r"\btrain\.loss = ([a-z_]+)"), r'compile(loss="\1")'),
         (re.compile(r"\btrain\."), "")]

# The engine's words for a device this machine cannot run: the argument is right, the machine lacks it.
_NO_DEVICE = re.compile(r'^runtime\.device = ("[^"]*"): (.*)$', re.S)


def _fit_error(error):
    """The exception fit raises for the engine's `error` once the run is set up or running."""
    found = _NO_DEVICE.match(str(error))
    if found:
        return DeviceError(f"fit: compile(device={found.group(1)}): {found.group(2)}")
    return translated(error, "fit")


def _python_message(message, folder, from_arrays=False):
    """An engine message about a configuration this module wrote, in the fit's terms: the arrays by their
    argument names, keys by the arguments that set them. From x and y, samples are shaped by x's shape."""
    message = message.replace(os.path.join(folder, _data.X_FILE), "x").replace(os.path.join(folder, _data.Y_FILE), "y")
    if from_arrays:
        message = message.replace("; data.reshape gives them another)",
                                  "; x.reshape(len(x), ...) gives them another)")
    if _PYTHON_CONFIG not in message:
        return message
    message = re.sub(re.escape(_PYTHON_CONFIG) + r"(:\d+(:\d+)?)?: ", "fit: ", message)
    for pattern, replacement in _KEYS:
        message = pattern.sub(replacement, message)
    return message
