"""Bad input raises the named exception, with a message that names the argument; nothing crashes."""

import os
import re
import shutil

import numpy as np
import pytest

import trainrr
from trainrr import layers, optimizers

from conftest import EXAMPLES


def model():
    m = trainrr.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return m


def data(rows=20, features=3):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.float32)


def test_exceptions_are_value_errors_where_the_input_is_a_value():
    assert issubclass(trainrr.ConfigError, ValueError) and issubclass(trainrr.DataError, ValueError)
    assert issubclass(trainrr.TraceError, trainrr.TrainrrError)


@pytest.mark.parametrize("x, message", [
    (np.array([["a", "b"], ["c", "d"]]), "x: dtype <U1 is not supported"),
    (np.zeros((4, 2), dtype=np.complex64), "x: dtype complex64 is not supported"),
    (np.zeros(4, dtype=np.float32), "x: expected an array of shape (rows, features...), got shape (4,)"),
    (np.zeros((0, 3), dtype=np.float32), "x: has no rows"),
    (np.zeros((5, 0), dtype=np.float32), "x: has no features (shape (5, 0))"),
    (np.zeros((5, 4, 0), dtype=np.float64), "x: has no features (shape (5, 4, 0))"),
])
def test_wrong_dtype_or_shape_of_x(x, message):
    with pytest.raises(trainrr.DataError) as e:
        model().fit(x, np.zeros(len(x)), verbose=0)
    assert str(e.value).startswith(message)


def test_rows_of_x_and_y_must_match():
    x, y = data()
    with pytest.raises(trainrr.DataError, match=r"^x and y: x has 20 rows, y has 19"):
        model().fit(x, y[:-1], verbose=0)


def test_one_hot_labels_are_refused_with_what_to_give_instead():
    x, y = data()
    with pytest.raises(trainrr.DataError, match=r"^y: expected one label per row.*argmax"):
        model().fit(x, np.eye(2)[y.astype(int)], verbose=0)


def test_several_regression_targets_are_refused_without_classification_advice():
    x, _ = data(rows=100)
    m = trainrr.Sequential([layers.Dense(3)])
    m.compile(optimizer="adam", loss="mse")
    with pytest.raises(trainrr.DataError) as e:
        m.fit(x, np.zeros((100, 3), dtype=np.float32), verbose=0)
    assert str(e.value) == ("y: expected one target per row, shape (rows,) or (rows, 1), got shape (100, 3): with "
                            "loss='mse' the engine fits one target per row (a regression with several targets is "
                            "not supported)")
    assert "argmax" not in str(e.value)


def test_nan_in_x_names_the_row_and_column():
    x, y = data()
    x[7, 2] = np.nan
    with pytest.raises(trainrr.DataError, match=r"^x: row 7, column 2: nan: every value must be a finite number"):
        model().fit(x, y, verbose=0)


def test_a_float64_value_beyond_float32_is_refused():
    x, y = data()
    x = x.astype(np.float64)
    x[3, 1] = 1e300
    with pytest.raises(trainrr.DataError, match=r"^x: row 3, column 1: too large for float32"):
        model().fit(x, y, verbose=0)


def test_labels_the_loss_cannot_take_name_y_and_the_row():
    x, y = data()
    y[5] = 3
    with pytest.raises(trainrr.DataError, match=r"^y: the label of row 5 \(counting from 0\) is 3: binary_crossentropy needs labels in \[0, 1\]"):
        model().fit(x, y, verbose=0)


def test_unknown_layer_argument_is_named_with_the_closest_one():
    with pytest.raises(trainrr.ConfigError, match=r"^layers.Dense: unknown argument 'activaton' \(did you mean 'activation'\?\)"):
        layers.Dense(4, activaton="relu")


def test_a_keras_argument_the_engine_lacks_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"^layers.Dense: argument 'kernel_regularizer' is not supported"):
        layers.Dense(4, kernel_regularizer="l2")
    with pytest.raises(ValueError, match=r"^optimizers.Adam: argument 'amsgrad' is not supported"):
        optimizers.Adam(amsgrad=True)
    x, y = data()
    with pytest.raises(ValueError, match=r"^fit: argument 'callbacks' is not supported"):
        model().fit(x, y, callbacks=[object()])


def test_values_are_checked_by_the_engine_with_its_words():
    with pytest.raises(trainrr.ConfigError, match=r"^layers.Dense: activation: unknown activation 'ReLU' \(did you mean 'relu'\?\)"):
        layers.Dense(4, activation="ReLU")
    with pytest.raises(trainrr.ConfigError, match=r"^layers.Dense: units must be an integer, got a string"):
        layers.Dense("4")
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'rate'"):
        layers.Dropout()  # as Keras: rate has no default
    with pytest.raises(trainrr.ConfigError, match=r"^layers.Dense: argument 'units' is required, got None"):
        layers.Dense(None)
    with pytest.raises(trainrr.ConfigError, match=r"^optimizers.SGD: learning_rate must be positive, got -1"):
        optimizers.SGD(learning_rate=-1)
    with pytest.raises(trainrr.ConfigError, match=r"^compile: .*categorical_crossentropy"):
        trainrr.Sequential([layers.Dense(1)]).compile(loss="categorical_crossentropy")
    with pytest.raises(trainrr.ConfigError, match=r"^compile: metrics: 'auc' is not supported"):
        trainrr.Sequential([layers.Dense(1)]).compile(loss="mse", metrics=["auc"])


def test_fit_values_are_checked():
    x, y = data()
    with pytest.raises(trainrr.ConfigError, match=r"^fit: epochs must be an integer, 1 or more, got 0"):
        model().fit(x, y, epochs=0)
    with pytest.raises(trainrr.ConfigError, match=r"^fit: validation_split must be a number in \[0, 1\), got 1.5"):
        model().fit(x, y, validation_split=1.5)
    # The engine's own check, in the fit's terms.
    with pytest.raises(trainrr.ConfigError, match=r"^fit: validation_split = 0.99 of 20 training rows leaves no training rows"):
        model().fit(x, y, validation_split=0.99, verbose=0)


def test_the_model_output_must_suit_the_loss():
    x, y = data()
    m = trainrr.Sequential([layers.Dense(3, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy")
    y[0] = 5
    # The labels are fit's argument y: the first that the model's outputs cannot take is named, as evaluate
    # names it.
    with pytest.raises(trainrr.DataError) as e:
        m.fit(x, y, verbose=0)
    assert str(e.value) == ("y: the label of row 0 (counting from 0) is 5: sparse_categorical_crossentropy needs "
                            "class indices from 0 to 2 (the model has 3 outputs)")
    m.fit(x, np.minimum(y, 2), verbose=0)
    with pytest.raises(trainrr.DataError) as again:
        m.evaluate(x, y, verbose=0)
    assert str(again.value) == str(e.value)


def test_evaluate_and_predict_check_the_sample_shape():
    x, y = data()
    m = model()
    m.fit(x, y, verbose=0)
    with pytest.raises(trainrr.DataError, match=r"^x: samples of shape \(4,\), but the model was trained on samples of shape \(3,\)"):
        m.predict(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(trainrr.DataError, match=r"^y: the label of row 0 \(counting from 0\) is 2: binary_crossentropy needs labels in \[0, 1\]"):
        m.evaluate(x, np.full(len(x), 2.0))


def test_using_an_untrained_model_says_fit_comes_first():
    with pytest.raises(trainrr.ConfigError, match=r"^predict: the model has not been trained"):
        model().predict(np.zeros((2, 3), dtype=np.float32))


def test_missing_trace_file_raises_trace_error_naming_it(tmp_path):
    missing = str(tmp_path / "missing.trr")
    for call in (lambda: trainrr.open(missing), lambda: trainrr.replay(missing),
                 lambda: trainrr.diff(missing, missing), lambda: trainrr.bisect(missing)):
        with pytest.raises(trainrr.TraceError) as e:
            call()
        assert missing in str(e.value)


def test_a_file_that_is_no_trace_raises_trace_error(tmp_path):
    path = tmp_path / "not.trr"
    path.write_bytes(b"this is not a trace at all, just some text")
    with pytest.raises(trainrr.TraceError, match="not.trr"):
        trainrr.open(path)


def test_a_missing_checkpoint_says_which_there_are(tmp_path):
    x, y = data()
    model().fit(x, y, verbose=0, record=tmp_path / "run.trr")
    with pytest.raises(trainrr.TraceError, match=r"no checkpoint after 5 steps \(it holds those after 0, 1 steps\)"):
        trainrr.open(tmp_path / "run.trr").checkpoint(5)


def test_a_configuration_error_names_the_file_line_and_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[model.layers]]\ntype = "Dense"\nunits = 1\nactivation = "ReLU"\n')
    with pytest.raises(trainrr.ConfigError, match=r"bad.toml:4: model.layers\[0\].activation: unknown activation"):
        trainrr.Sequential.from_config(config)


def test_a_missing_data_file_is_a_data_error(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[data]\npath = "nowhere.csv"\nlabel = "y"\n[[model.layers]]\ntype = "Dense"\nunits = 1\n'
                      '[train]\nloss = "mse"\n')
    with pytest.raises(trainrr.DataError, match=r"nowhere.csv"):
        trainrr.Sequential.from_config(config).fit(verbose=0)


def test_a_second_fit_in_one_recording_is_refused(tmp_path):
    x, y = data()
    with trainrr.record(tmp_path / "run.trr"):
        model().fit(x, y, verbose=0)
        with pytest.raises(trainrr.ConfigError, match=r"holds one run"):
            model().fit(x, y, verbose=0)


def test_a_refused_fit_leaves_the_recording_to_the_next_one(tmp_path):
    x, y = data()
    bad = x.copy()
    bad[0, 0] = np.inf
    with trainrr.record(tmp_path / "run.trr", seed=3) as rec:
        with pytest.raises(trainrr.DataError):
            model().fit(bad, y, verbose=0)
        assert not (tmp_path / "run.trr").exists()
        model().fit(x, y, verbose=0)
    assert rec.bytes > 0 and trainrr.open(tmp_path / "run.trr").seed == 3


def test_an_unknown_device_is_a_config_error_at_compile():
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    with pytest.raises(trainrr.ConfigError) as e:
        m.compile(optimizer="adam", loss="binary_crossentropy", device="gpu")
    assert "unknown device \"gpu\": expected cpu, cuda or cuda:N" in str(e.value)


def test_a_gpu_run_where_none_can_run_says_why_before_training():
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", device="cuda")
    x, y = data()
    try:
        m.fit(x, y, verbose=0)
    except trainrr.TrainrrError as e:
        message = str(e)
        # The argument is right; the machine lacks what it asks for: a RuntimeError, not a ValueError.
        assert isinstance(e, trainrr.DeviceError) and isinstance(e, RuntimeError) and not isinstance(e, ValueError)
    else:
        pytest.skip("this machine trains on a GPU")
    assert message.startswith('fit: compile(device="cuda"): '), message
    # This machine's reason: no driver or no device (the CUDA backend), or no backend at all.
    assert any(why in message for why in ("no CUDA driver", "sees no GPU", "cudaGetDeviceCount failed",
                                          "built without the CUDA backend")), message


def test_tf32_is_a_runtime_setting_that_must_be_a_bool():
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    with pytest.raises(trainrr.ConfigError) as e:
        m.compile(optimizer="adam", loss="binary_crossentropy", tf32="yes")
    assert "tf32 must be true or false, got a string" in str(e.value)
    m.compile(optimizer="adam", loss="binary_crossentropy", tf32=False)


def test_numpy_scalars_are_taken_where_a_number_is(tmp_path):
    x, y = data()
    history = model().fit(x, y, epochs=np.int64(2), batch_size=np.int32(8), seed=np.int64(3),
                          validation_split=np.float32(0.1), shuffle=np.bool_(True), verbose=np.int64(0),
                          record=trainrr.record(tmp_path / "run.trr", seed=np.int64(3),
                                                checkpoint_every=np.int64(2)))
    assert len(history.history["loss"]) == 2 and history.params["steps"] == 3  # 18 training rows in batches of 8
    assert trainrr.open(tmp_path / "run.trr").seed == 3
    assert trainrr.replay(tmp_path / "run.trr", from_step=np.int64(1), to_step=np.int64(3)).status == "reproduced"
    assert trainrr.open(tmp_path / "run.trr").checkpoint(np.int64(0))
    assert layers.Dropout(np.float32(0.5)).get_config() == {"rate": 0.5}
    assert layers.Dense(np.int64(4), use_bias=np.bool_(False)).get_config() == {"units": 4, "use_bias": False}
    assert optimizers.SGD(learning_rate=np.float64(0.5), nesterov=np.bool_(True)).get_config() == \
        {"learning_rate": 0.5, "nesterov": True}


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: m.fit(x, y, epochs="2"), "fit: epochs must be an integer, 1 or more, got '2' (str)"),
    (lambda m, x, y: m.fit(x, y, epochs=np.float64(2)), "fit: epochs must be an integer, 1 or more, got 2.0 (float64)"),
    (lambda m, x, y: m.fit(x, y, batch_size=True), "fit: batch_size must be an integer, 1 or more, got True (bool)"),
    (lambda m, x, y: m.fit(x, y, seed="3"),
     "fit: seed must be an integer from 0 to 9223372036854775807, got '3' (str)"),
    (lambda m, x, y: m.fit(x, y, validation_split="0.1"),
     "fit: validation_split must be a number in [0, 1), got '0.1' (str)"),
    (lambda m, x, y: m.fit(x, y, shuffle=1), "fit: shuffle must be True or False, got 1"),
    (lambda m, x, y: trainrr.record("x.trr", seed="1"),
     "record: seed must be an integer from 0 to 9223372036854775807, got '1' (str)"),
])
def test_a_refused_value_that_looks_right_shows_its_type(call, message):
    x, y = data()
    with pytest.raises(trainrr.ConfigError) as e:
        call(model(), x, y)
    assert str(e.value) == message


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Dense(0), "layers.Dense: units must be a positive integer, got 0"),
    (lambda: layers.Dense(-1), "layers.Dense: units must be a positive integer, got -1"),
    (lambda: layers.Conv2D(0, 3), "layers.Conv2D: filters must be a positive integer, got 0"),
    (lambda: layers.Dropout(1.5), "layers.Dropout: rate must be a number in [0, 1), got 1.5"),
    (lambda: layers.Dropout(-0.1), "layers.Dropout: rate must be a number in [0, 1), got -0.1"),
    (lambda: layers.BatchNormalization(momentum=2), "layers.BatchNormalization: momentum must be a number in [0, 1], got 2"),
    (lambda: layers.BatchNormalization(epsilon=0.0), "layers.BatchNormalization: epsilon must be a positive number, got 0.0"),
    (lambda: trainrr.losses.MeanSquaredError(from_logits=True),
     "losses.MeanSquaredError: unknown argument 'from_logits' (it applies to the cross-entropies, whose outputs may "
     "be logits; a regression's outputs are the values themselves)"),
    (lambda: trainrr.losses.BinaryCrossentropy(from_logits="no"),
     "losses.BinaryCrossentropy: from_logits must be True or False, got 'no' (str)"),
])
def test_values_out_of_range_are_refused_by_the_constructor_naming_class_and_argument(make, message):
    with pytest.raises(trainrr.ConfigError) as e:
        make()
    assert str(e.value) == message


def test_refused_replay_and_compile_arguments_name_the_argument(tmp_path):
    x, y = data()
    model().fit(x, y, verbose=0, record=tmp_path / "run.trr")
    trace = tmp_path / "run.trr"
    cases = [
        (lambda: trainrr.replay(trace, overrides={"train.epoch": 3}),
         "replay: overrides: unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
        (lambda: trainrr.replay(trace, overrides={"train.epochs": 0}), "replay: overrides: train.epochs must be"),
        (lambda: trainrr.replay(trace, overrides=["train.epochs=[1"]),
         "replay: overrides: 'train.epochs=[1': the value is not valid TOML"),
        (lambda: trainrr.replay(trace, overrides=["epochs"]),
         "replay: overrides: expected 'key=value' strings (such as 'train.epochs=5'), got 'epochs' (str)"),
        (lambda: trainrr.bisect(trace, overrides={"train.epoch": 3}),
         "bisect: overrides: unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
        (lambda: trainrr.replay(trace, from_step=-1), "replay: from_step must be an integer, 0 or more, got -1"),
        (lambda: trainrr.replay(trace, to_step=0), "replay: to_step must be an integer, 1 or more, got 0"),
        (lambda: trainrr.replay(trace, from_step=2, to_step=2), "replay: to_step must be greater than from_step"),
        (lambda: trainrr.replay(trace, force="rng,foo"), "replay: force: unknown choice 'foo' (expected all, none"),
        (lambda: trainrr.replay(trace, force=""), "replay: force must be 'all', 'none' or a list of rng, split, "
         "shuffle, loader, kernels, got an empty string"),
        (lambda: trainrr.replay(trace, force=["rng", ""]), "replay: force must be 'all', 'none' or a list of rng"),
        (lambda: trainrr.Sequential.from_config(tmp_path / "nope.toml"),
         f"from_config: {tmp_path / 'nope.toml'}: cannot open the configuration: No such file or directory"),
        (lambda: trainrr.Sequential([layers.Dense(1)]).compile(optimizer="adagrad", loss="mse"),
         "compile: optimizer: unknown optimizer 'adagrad'"),
        (lambda: model().fit(x, y, verbose=3), "fit: verbose must be 'auto', 0, 1 or 2, got 3"),
    ]
    for call, message in cases:
        with pytest.raises(trainrr.ConfigError) as e:
            call()
        assert str(e.value).startswith(message), str(e.value)
        assert "--set" not in str(e.value) and "(in the trace)" not in str(e.value) and "--force" not in str(e.value)


def test_a_missing_configuration_file_is_a_file_not_found_error_and_a_config_error(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        trainrr.Sequential.from_config(tmp_path / "nope.toml")
    assert isinstance(e.value, trainrr.ConfigError)
    assert str(e.value) == (f"from_config: {tmp_path / 'nope.toml'}: cannot open the configuration: No such file "
                            f"or directory")


def test_the_non_finite_loss_warning_of_a_fit_on_arrays_gives_advice_in_its_terms(capsys):
    x, y = data(rows=200)
    m = trainrr.Sequential([layers.Dense(8), layers.Dense(1)])
    m.compile(optimizer=optimizers.SGD(learning_rate=1e6), loss="mse")
    m.fit(x * 1e3, y, epochs=2, verbose=0)
    err = capsys.readouterr().err
    assert "training has diverged" in err and "standardized x may help" in err
    assert "data.scale" not in err


def test_the_output_warnings_of_a_fit_on_arrays_give_advice_in_its_terms(capsys):
    x, y = data(rows=64)
    linear = trainrr.Sequential([layers.Dense(1)])
    linear.compile(optimizer="adam", loss="binary_crossentropy", tf32=True)
    linear.fit(x, y, verbose=0)
    err = capsys.readouterr().err
    assert ("warning: compile(loss='binary_crossentropy') takes the outputs as probabilities (from_logits=False), "
            "but the model's last activation is linear (give loss=losses.BinaryCrossentropy(from_logits=True), or "
            "end the model in activation='sigmoid')") in err, err
    assert "warning: compile(tf32=True) has no effect on the CPU" in err, err
    # A relu's outputs are no logits either: the advice is to end in a sigmoid.
    relu = trainrr.Sequential([layers.Dense(1, activation="relu")])
    relu.compile(optimizer="adam", loss="binary_crossentropy")
    relu.fit(x, y, verbose=0)
    err += capsys.readouterr().err
    assert ("but the model's last activation is relu (end the model in activation='sigmoid', or in a linear output "
            "with loss=losses.BinaryCrossentropy(from_logits=True))") in err, err
    probabilities = trainrr.Sequential([layers.Dense(2, activation="softmax")])
    probabilities.compile(optimizer="adam", loss=trainrr.losses.SparseCategoricalCrossentropy(from_logits=True))
    probabilities.fit(x, y, verbose=0)
    err += capsys.readouterr().err
    assert ("warning: compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True)) takes the outputs as "
            "logits, but the model's output comes from a softmax activation: its outputs are probabilities, not "
            "logits (give loss='sparse_categorical_crossentropy', whose from_logits is False)") in err, err
    assert "train." not in err and "runtime." not in err and "from_logits = " not in err


def test_save_html_refuses_to_overwrite_a_file_that_is_not_a_report(tmp_path):
    x, y = data(rows=64)
    trace = tmp_path / "run.trr"
    model().fit(x, y, epochs=1, verbose=0, record=trainrr.record(trace, seed=5))
    before = trace.read_bytes()
    report = trainrr.replay(trace)
    with pytest.raises(FileExistsError) as e:
        report.save_html(trace)
    assert str(e.value) == (f"{trace} exists and is not an HTML report (a report trainrr wrote names trainrr as "
                            "its generator in its first bytes): refusing to overwrite it")
    assert trace.read_bytes() == before
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body>someone's page</body></html>")
    with pytest.raises(FileExistsError, match="page.html exists and is not an HTML report"):
        report.save_html(page)
    assert page.read_text() == "<!doctype html><html><body>someone's page</body></html>"
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    with pytest.raises(FileExistsError, match="notes.txt exists and is not an HTML report"):
        report.save_html(str(notes))
    assert notes.read_text() == "keep"
    with pytest.raises(IsADirectoryError, match="is a directory"):
        report.save_html(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.save_html(tmp_path / "absent" / "report.html")
    # A new file, an empty one and an earlier report are written.
    for target in (tmp_path / "report.html", tmp_path / "report.html", tmp_path / "empty.html"):
        if target.name == "empty.html":
            target.write_text("")
        report.save_html(target)
        assert target.read_text() == report.html()
    # An earlier report that only its owner may read stays so.
    (tmp_path / "report.html").chmod(0o600)
    report.save_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o600


def test_to_config_refuses_to_overwrite_a_file_that_is_not_a_configuration(tmp_path):
    x, y = data(rows=64)
    m = model()
    trace = tmp_path / "run.trr"
    m.fit(x, y, epochs=1, verbose=0, record=trainrr.record(trace, seed=5))
    before = trace.read_bytes()
    with pytest.raises(FileExistsError) as e:
        m.to_config(trace)
    assert str(e.value) == (f"to_config: {trace} exists and is not a trainrr run configuration: refusing to "
                            f"overwrite it")
    assert trace.read_bytes() == before
    assert not (tmp_path / "x.npy").exists(), "nothing is written when the configuration is refused"
    # The arrays beside it: an earlier x.npy is replaced, a file of another kind under that name is not.
    (tmp_path / "x.npy").write_text("my notes")
    with pytest.raises(FileExistsError, match="x.npy exists and is not a .npy file"):
        m.to_config(tmp_path / "run.toml")
    assert (tmp_path / "x.npy").read_text() == "my notes" and not (tmp_path / "run.toml").exists()
    (tmp_path / "x.npy").unlink()
    m.to_config(tmp_path / "run.toml")
    m.to_config(tmp_path / "run.toml")  # an earlier configuration and earlier arrays are replaced
    assert np.load(tmp_path / "x.npy").shape == (64, 3)
    # Another tool's TOML, a file of comments, key = "value" lines: valid TOML, no run configuration, kept.
    for name, text in (("pyproject.toml", '[project]\nname = "mine"\n\n[tool.black]\nline-length = 100\n'),
                       ("notes.txt", "# my notes\n# keep this\n"), (".env", 'API_KEY = "abc123"\n'),
                       ("half.toml", 'seed = 1\n[tool.other]\nx = 1\n[model]\n')):
        (tmp_path / name).write_text(text)
        with pytest.raises(FileExistsError, match="is not a trainrr run configuration"):
            m.to_config(tmp_path / name)
        assert (tmp_path / name).read_text() == text


def test_to_config_never_overwrites_a_data_set_under_the_names_of_its_arrays(tmp_path):
    # The user's data set, saved as x.npy and y.npy; a fit on a part of it, then to_config into that folder.
    rng = np.random.default_rng(0)
    full = rng.normal(size=(200, 3))
    labels = (full[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "x.npy", full)
    np.save(tmp_path / "y.npy", labels)
    before = {n: (tmp_path / n).read_bytes() for n in ("x.npy", "y.npy")}
    m = model()
    m.fit(full[:50], labels[:50], verbose=0, seed=1)
    with pytest.raises(FileExistsError) as e:
        m.to_config(tmp_path / "run.toml")
    assert str(e.value).startswith(f"to_config: {tmp_path / 'x.npy'} exists and holds another array than the last "
                                   f"fit's x, and no to_config of this session wrote it: refusing to overwrite it")
    assert "give to_config a path in another folder" in str(e.value)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before and not (tmp_path / "run.toml").exists()
    # Files that hold the very bytes to be written are replaced by the same bytes.
    np.save(tmp_path / "x.npy", full[:50].astype(np.float32))
    np.save(tmp_path / "y.npy", labels[:50].astype(np.float32))
    m.to_config(tmp_path / "run.toml")
    assert np.load(tmp_path / "x.npy").shape == (50, 3)
    # Arrays an earlier to_config wrote are replaced by the next fit's, while they hold what it wrote.
    with pytest.warns(UserWarning, match="fitted before"):
        m.fit(full[:80], labels[:80], verbose=0, seed=1)
    m.to_config(tmp_path / "run.toml")
    assert np.load(tmp_path / "x.npy").shape == (80, 3)
    np.save(tmp_path / "y.npy", labels)  # changed since: the user's now
    with pytest.warns(UserWarning, match="fitted before"):
        m.fit(full[:60], labels[:60], verbose=0, seed=1)
    with pytest.raises(FileExistsError, match=r"y\.npy exists and holds another array than the last fit's y"):
        m.to_config(tmp_path / "run.toml")
    assert np.array_equal(np.load(tmp_path / "y.npy"), labels) and np.load(tmp_path / "x.npy").shape == (80, 3)


def test_a_value_without_a_configuration_form_is_refused_naming_the_argument():
    with pytest.raises(trainrr.ConfigError) as e:
        optimizers.Adam(learning_rate=lambda step: 0.1)
    assert str(e.value).startswith("optimizers.Adam: learning_rate must be a number (a schedule is not "
                                   "supported: the engine trains with a constant rate), got <function ")
    with pytest.raises(trainrr.ConfigError, match=r"^layers.Dense: kernel_initializer must be a string, a number, "
                                                  r"a bool or a list of them, got <object object at "):
        layers.Dense(2, kernel_initializer=object())


def test_a_path_that_cannot_take_the_output_raises_the_oserror_open_raises_for_it(tmp_path):
    x, y = data(rows=64)
    m = model()
    trace = tmp_path / "run.trr"
    m.fit(x, y, verbose=0, record=trainrr.record(trace, seed=5))
    report = trainrr.replay(trace)
    table = tmp_path / "data.csv"
    table.write_text("a,b\n1,2\n")
    folder = tmp_path / "adir"
    folder.mkdir()
    missing = tmp_path / "missing"
    # record (a trace), save_html (a report) and to_config (a configuration) alike.
    cases = [
        (FileExistsError, lambda: model().fit(x, y, verbose=0, record=table), "data.csv: exists and is not a trainrr trace"),
        (FileExistsError, lambda: report.save_html(table), "data.csv exists and is not an HTML report"),
        (FileExistsError, lambda: m.to_config(table), "data.csv exists and is not a trainrr run configuration"),
        (IsADirectoryError, lambda: model().fit(x, y, verbose=0, record=folder), "adir: not a regular file (it is a directory)"),
        (IsADirectoryError, lambda: report.save_html(folder), "adir is a directory"),
        (IsADirectoryError, lambda: m.to_config(folder), "adir is a directory; a configuration needs a file path"),
        (FileNotFoundError, lambda: model().fit(x, y, verbose=0, record=missing / "run.trr"), "missing"),
        (FileNotFoundError, lambda: report.save_html(missing / "report.html"), "folder"),
    ]
    for error, call, words in cases:
        with pytest.raises(error) as e:
            call()
        assert words in str(e.value) and "Errno" not in str(e.value), str(e.value)
        if "record" in call.__code__.co_names:
            assert isinstance(e.value, trainrr.TraceError), type(e.value).__mro__  # trainrr's kind, too
    assert table.read_text() == "a,b\n1,2\n" and not missing.exists()
    # to_config makes the folders on the way (to_config("cli/run.toml")), as documented.
    m.to_config(missing / "run.toml")
    assert (missing / "x.npy").exists()


# An option of the command line, as an engine message may give it: "--data PATH", "(-o)".
_CLI_OPTION = re.compile(r"(^|[\s(`'])--?[a-z]")


def test_engine_messages_name_the_arguments_of_the_python_call(tmp_path):
    shutil.copy(os.path.join(EXAMPLES, "breast_cancer.toml"), tmp_path / "bc.toml")
    (tmp_path / "data").mkdir()
    csv = tmp_path / "data" / "breast_cancer.csv"
    shutil.copy(os.path.join(EXAMPLES, "data", "breast_cancer.csv"), csv)
    settings = {"runtime.policy": "deterministic", "runtime.threads": 1, "train.epochs": 1}  # a dict, as replay's
    a, b = tmp_path / "a.trr", tmp_path / "b.trr"
    trainrr.Sequential.from_config(tmp_path / "bc.toml", overrides=settings).fit(verbose=0, record=a, seed=1)
    trainrr.Sequential.from_config(tmp_path / "bc.toml", overrides=settings).fit(verbose=0, record=b, seed=2)
    lines = csv.read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines[:1] + [lines[2], lines[1]] + lines[3:]) + "\n")
    cases = [
        (lambda: trainrr.replay(a, data=changed), trainrr.TraceError,
         # the recorded copy, still at its recorded path, says where the two first differ
         "digests differ); first difference at line 2 (data row 0, counting from 0), column 1 'mean_radius': "
         "17.99 (recorded) vs 20.57 (now); pass allow_data_change=True to replay anyway"),
        # bisect takes no allow_data_change (nor does the command): what it can do is said instead.
        (lambda: trainrr.bisect(a, data=changed), trainrr.TraceError,
         "(now); bisect replays only on the recorded data: give data= a copy of it "
         "(trainrr.replay(..., allow_data_change=True) replays on this one and names the data as the cause)"),
        (lambda: trainrr.bisect(a, against=b), trainrr.TraceError,
         f"against={b} is a recording of another run (seed: 1 -> 2): bisect needs two recordings of the same "
         f"configuration and data; trainrr.diff compares different runs"),
        (lambda: trainrr.Sequential.from_config(tmp_path / "bc.toml", overrides={"runtime.policy": "nope"}),
         trainrr.ConfigError, "from_config: overrides: runtime.policy: unknown policy 'nope'"),
        (lambda: trainrr.Sequential.from_config(tmp_path / "bc.toml", overrides=["runtime.policy"]),
         trainrr.ConfigError, "from_config: overrides: expected 'key=value' strings (such as 'train.epochs=5')"),
    ]
    try:
        trainrr.replay(a, overrides={"runtime.device": "cuda"})
    except trainrr.TraceError as e:  # where no GPU can run it: the override asked for it, and is named
        cases.append((lambda: trainrr.replay(a, overrides={"runtime.device": "cuda"}), trainrr.TraceError,
                      'overrides={"runtime.device": "cuda"} asks for the GPU, which cannot run here'))
        cases.append((lambda: trainrr.replay(a, overrides={"runtime.device": "cuda"}), trainrr.TraceError,
                      'recorded with runtime.device = "cpu": replay it without that override'))
    for call, error, words in cases:
        with pytest.raises(error) as e:
            call()
        assert words in str(e.value), str(e.value)
        assert not _CLI_OPTION.search(str(e.value)), str(e.value)
    os.rename(csv, tmp_path / "moved.csv")
    for call in (lambda: trainrr.replay(a), lambda: trainrr.bisect(a)):
        with pytest.raises(trainrr.TraceError) as e:
            call()
        assert str(e.value) == (f"data file {csv} is missing: pass data=PATH, or record with "
                                f"trainrr.record(..., embed_data=True)")
    assert trainrr.replay(a, data=tmp_path / "moved.csv").status == "reproduced"


@pytest.mark.parametrize("call, message, python", [
    ("fit", "run.trr: another trainrr (pid 12) is recording to this trace; choose another trace path (-o) or "
     "wait for it to finish", "choose another trace path (record=...) or wait"),
    ("replay", "the trace's configuration reads its labels file from a, but ...; replay reads neither (--set "
     "data.labels=PATH replays with a file of your choice)", '(overrides={"data.labels": PATH} replays with'),
    ("replay", "the trace's configuration reads its features file from a, but ...; replay reads neither (--data "
     "PATH replays with a file of your choice)", "(data=PATH replays with"),
    ("from_config", "<stdin>: data.path = \"x.csv\" is a relative path, ...: give an absolute path (in the "
     "configuration, or --set data.path=/absolute/path), or give", 'or overrides={"data.path": "/absolute/path"}), or give'),
    ("replay", "--set train.epochs=3: expected key=value, e.g. --set train.epochs=5",
     'e.g. overrides={"train.epochs": 5}'),
    ("fit", "cannot here: ... To replay it on the CPU: --set runtime.device=cpu (the report", 'compile(device="cpu")'),
    ("fit", "give --set train.batch_size=16 or", "give fit(batch_size=16) or"),
])
def test_the_commands_options_in_an_engine_message_become_the_calls_arguments(call, message, python):
    from trainrr._errors import python_terms

    said = python_terms(message, call)
    assert python in said and not _CLI_OPTION.search(said), said


def test_a_first_layer_that_wants_images_says_x_shapes_the_samples():
    m = trainrr.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    x, y = data(rows=10, features=16)
    with pytest.raises(trainrr.ConfigError) as e:
        m.fit(x, y, epochs=1, verbose=0)
    assert "conv2d_1 expects input of rank 3 per sample (height, width, channels), got (16,)" in str(e.value)
    assert "(its input is the data's samples, of shape (16,); x.reshape(len(x), ...) gives them another)" in str(e.value)
    assert "data.reshape" not in str(e.value)


def test_two_recordings_of_one_run_are_refused_before_it_trains(tmp_path):
    x, y = data()
    outer, inner = tmp_path / "outer.trr", tmp_path / "inner.trr"
    with trainrr.record(outer):
        with trainrr.record(inner):
            with pytest.raises(trainrr.ConfigError, match=r"^fit: this run would be recorded to .*inner\.trr, but "
                               r"the enclosing `with trainrr.record\(.*outer\.trr'\)` block, which has recorded "
                               r"no run yet"):
                model().fit(x, y, verbose=0)
        with pytest.raises(trainrr.ConfigError, match=r"^fit: this run would be recorded to .*other\.trr"):
            model().fit(x, y, verbose=0, record=tmp_path / "other.trr")
        # The block's own run, then another to a trace of its own.
        model().fit(x, y, verbose=0)
        model().fit(x, y, verbose=0, record=tmp_path / "other.trr")
    assert not inner.exists()
    assert outer.exists() and (tmp_path / "other.trr").exists()


def test_record_naming_the_enclosing_blocks_own_path_is_refused_before_it_trains(tmp_path):
    # The block records the first fit inside it, with its own seed; a record= of the same path would record the
    # run without the block's settings and leave the block to record the next fit over that trace.
    x, y = data()
    path = tmp_path / "same.trr"
    with trainrr.record(path, seed=2) as block:
        for record in (path, str(path), trainrr.record(path, seed=2)):
            with pytest.raises(trainrr.ConfigError, match=r"^fit: record='.*same\.trr' inside the `with "
                               r"trainrr.record\('.*same\.trr'\)` block, which has recorded no run yet: .*drop "
                               r"record= from this fit"):
                model().fit(x, y, verbose=0, record=record)
            assert not path.exists()
        # The block object itself is the block's recording: that is the block's run.
        model().fit(x, y, epochs=2, verbose=0, record=block)
        # Recorded, the block holds its run: a second fit inside it is refused.
        with pytest.raises(trainrr.ConfigError, match="holds one run"):
            model().fit(x, y, verbose=0)
    trace = trainrr.open(path)
    assert trace.seed == 2 and len(trace.epochs()) == 2


def test_one_layer_object_in_two_places_is_refused():
    d = layers.Dense(8)
    with pytest.raises(trainrr.ConfigError, match=r"^Sequential: the same layer object \(layers.Dense\(units=8\)\) "
                       r"is at layers\[0\] and layers\[1\]: trainrr shares no weights"):
        trainrr.Sequential([d, d, layers.Dense(1)])
    m = trainrr.Sequential([d, layers.Dense(1)])
    m.layers.append(d)
    m.compile(optimizer="sgd", loss="mse")
    x, y = data()
    with pytest.raises(trainrr.ConfigError, match=r"^fit: the same layer object"):
        m.fit(x, y, verbose=0)


def test_a_layer_without_a_name_skips_a_name_another_is_given(tmp_path):
    m = trainrr.Sequential([layers.Dense(3, name="dense_1"), layers.Dense(1, activation="sigmoid")])
    assert [layer.name for layer in m.layers] == ["dense_1", "dense_2"]
    m.compile(optimizer="sgd", loss="binary_crossentropy")
    x, y = data()
    m.fit(x, y, verbose=0, record=tmp_path / "run.trr")
    assert list(trainrr.open(tmp_path / "run.trr").checkpoint(0)) == [
        "dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"]


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Dense(4, input_shape=(3,)), "layers.Dense: argument 'input_shape' is not supported: a model "
                                                "takes its input shape from the data fit trains on: leave the "
                                                "argument out"),
    (lambda: layers.Dense(4, input_dim=3), "layers.Dense: argument 'input_dim' is not supported: a model takes"),
    (lambda: layers.Dense(4, activation="gelu"), "layers.Dense: activation: activation 'gelu' is a Keras one that "
                                                "trainrr's engine lacks (its activations: linear, relu, sigmoid, "
                                                "tanh, softmax)"),
    (lambda: layers.Dense(4, activation="relux"), "layers.Dense: activation: unknown activation 'relux' (did you "
                                                "mean 'relu'?)"),
    (lambda: layers.Dense(4, kernel_initializer="ones"), "layers.Dense: kernel_initializer: initializer 'ones' is "
                                                        "a Keras one that trainrr's engine lacks"),
])
def test_keras_names_the_engine_lacks_are_not_taken_for_misspellings(make, message):
    with pytest.raises(trainrr.ConfigError) as e:
        make()
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("loss, message", [
    ("mae", "compile: loss: loss 'mae' is a Keras one that trainrr's engine lacks (its losses"),
    ("MAE", "compile: loss: loss 'MAE' is a Keras one that trainrr's engine lacks (its losses"),
    ("Huber", "compile: loss: loss 'Huber' is a Keras one that trainrr's engine lacks (its losses"),
    ("CategoricalCrossentropy", "compile: loss: loss 'CategoricalCrossentropy' (one-hot labels) is a Keras one "
                                "that trainrr's engine lacks: sparse_categorical_crossentropy computes the same"),
    ("categorical_crossentropy", "compile: loss: loss 'categorical_crossentropy' (one-hot labels) is a Keras "
                                 "one that trainrr's engine lacks: sparse_categorical_crossentropy computes the same"),
])
def test_keras_losses_the_engine_lacks_are_named_as_such(loss, message):
    with pytest.raises(trainrr.ConfigError) as e:
        trainrr.Sequential([layers.Dense(1)]).compile(optimizer="sgd", loss=loss)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("alias, name", [("MSE", "mse"), ("mean_squared_error", "mse"), ("bce", "binary_crossentropy"),
                                         ("BCE", "binary_crossentropy")])
def test_keras_other_spellings_of_a_loss_are_that_loss(alias, name):
    m = trainrr.Sequential([layers.Dense(1)])
    m.compile(optimizer="sgd", loss=alias)
    assert m._compiled["loss"] == name


def test_an_output_the_loss_cannot_take_is_named_as_compile_takes_the_loss():
    x, y = data()
    m = trainrr.Sequential([layers.Dense(2, activation="sigmoid")])
    m.compile(optimizer="sgd", loss="binary_crossentropy")
    with pytest.raises(trainrr.ConfigError) as e:
        m.fit(x, (y > 0).astype(np.float32), verbose=0)
    assert str(e.value).startswith('fit: compile(loss="binary_crossentropy"): binary_crossentropy needs 1 value '
                                   'per sample but the model outputs 2'), str(e.value)


def test_a_label_is_shown_as_the_float32_it_is_and_a_fraction_is_no_index():
    x, _ = data()
    m = trainrr.Sequential([layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = np.zeros(len(x), dtype=np.float32)
    y[3] = 0.9999999
    with pytest.raises(trainrr.DataError, match=r"label of row 3 .*is 0\.9999999: sparse_categorical_crossentropy "
                                                r"needs class indices, integers from 0"):
        m.fit(x, y, verbose=0)
    m.fit(x, np.zeros(len(x)), verbose=0)
    y = np.zeros(len(x))
    y[2] = 0.5
    with pytest.raises(trainrr.DataError, match=r"^y: the label of row 2 \(counting from 0\) is 0\.5: "
                                                r"sparse_categorical_crossentropy needs class indices, integers "
                                                r"from 0 to 2"):
        m.evaluate(x, y, verbose=0)


def test_an_array_given_for_a_path_is_named_by_its_shape_not_printed():
    with pytest.raises(trainrr.ConfigError) as e:
        trainrr.replay("run.trr", data=np.zeros((1000, 30)))
    assert str(e.value) == ("replay: data: must be a file path, got a ndarray of shape (1000, 30) (a replay reads "
                            "the data from a file: save the array with numpy.save and give its path)")


@pytest.mark.parametrize("shape_y, message", [
    (lambda y: np.eye(2)[y.astype(int)], "(one-hot rows of two classes: give their class indices, y.argmax(axis=1), "
                                         "the 0 and 1 that binary_crossentropy takes)"),
    (lambda y: y.reshape(1, -1), "got shape (1, 20), which holds one value per row: give y.reshape(-1)"),
    (lambda y: y.reshape(-1, 1, 1), "got shape (20, 1, 1), which holds one value per row: give y.reshape(-1)"),
])
def test_labels_of_another_shape_get_advice_that_fits_the_loss(shape_y, message):
    x, y = data()
    with pytest.raises(trainrr.DataError) as e:
        model().fit(x, shape_y(y), verbose=0)
    assert message in str(e.value), str(e.value)


def test_class_indices_for_a_model_of_one_output_point_to_binary_crossentropy():
    x, y = data()
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(trainrr.DataError, match=r"needs one output per class, and the model has 1 output \(for two "
                                                r"classes, 0 and 1: loss='binary_crossentropy' with a sigmoid output"):
        m.fit(x, y, verbose=0)


def test_a_data_file_an_override_names_is_told_as_the_override(tmp_path):
    x, y = data()
    model().fit(x, y, verbose=0, record=tmp_path / "run.trr")
    with pytest.raises(trainrr.TraceError) as e:
        trainrr.replay(tmp_path / "run.trr", overrides={"data.path": str(tmp_path / "nope.npy")})
    assert '(overrides={"data.path": ...}) does not exist' in str(e.value), str(e.value)
    assert "--set" not in str(e.value), str(e.value)


def test_a_one_dimensional_x_gets_the_reshape_that_fits_the_model():
    x, y = data(features=3)
    with pytest.raises(trainrr.DataError, match=re.escape(
            "x: expected an array of shape (rows, features...), got shape (3,) (for one feature per row, reshape it "
            "with x.reshape(-1, 1); for one sample of 3 features, with x.reshape(1, -1))")):
        model().fit(x[0], y[:1], verbose=0)
    m = model()
    m.fit(x, y, verbose=0)
    # One sample of the model's features: a row of it, not a column.
    with pytest.raises(trainrr.DataError, match=re.escape(
            "got shape (3,) (the model takes samples of shape (3,): for one sample, give x.reshape(1, -1) or "
            "x[None])")):
        m.predict(x[0])
    assert m.predict(x[0].reshape(1, -1)).shape == (1, 1)
    with pytest.raises(trainrr.DataError, match=re.escape(
            "got shape (6,) (the model takes samples of shape (3,): for 2 samples, give x.reshape(-1, 3))")):
        m.evaluate(x[:2].reshape(-1), y[:2], verbose=0)
    with pytest.raises(trainrr.DataError, match=re.escape(
            "got shape (4,) (the model takes samples of shape (3,), 3 values each, and its 4 values are no whole "
            "number of samples)")):
        m.predict(x[0, :2].repeat(2))
    one = model()
    one.fit(x[:, :1], y, verbose=0)
    with pytest.raises(trainrr.DataError, match=re.escape(
            "got shape (20,) (the model was trained on one feature per row: reshape it with x.reshape(-1, 1))")):
        one.predict(x[:, 0])


def test_a_layer_named_by_one_model_keeps_its_name_in_another():
    shared = layers.Dense(8, activation="relu")
    first = trainrr.Sequential([layers.Dense(8, activation="relu"), shared, layers.Dense(1, activation="sigmoid")])
    assert [layer.name for layer in first.layers] == ["dense_1", "dense_2", "dense_3"]
    # The second model counts its own unnamed layers around the name the layer keeps, as around one given.
    second = trainrr.Sequential([shared, layers.Dense(1, activation="sigmoid")])
    assert [layer.name for layer in second.layers] == ["dense_2", "dense_1"]
    x, y = data()
    for m in (first, second):
        m.compile(optimizer="sgd", loss="binary_crossentropy")
        m.fit(x, y, verbose=0)
    # Each model's summary (the engine's names, those its traces use) says what its layers' names say.
    assert [line.split(" ")[0] for line in _summary_lines(first)] == ["dense_1", "dense_2", "dense_3"]
    assert [line.split(" ")[0] for line in _summary_lines(second)] == ["dense_2", "dense_1"]
    assert [layer.name for layer in first.layers] == ["dense_1", "dense_2", "dense_3"]
    # A notebook cell run again builds a model of the same layers: the same names, the same run.
    again = trainrr.Sequential(list(first.layers))
    assert [layer.name for layer in again.layers] == ["dense_1", "dense_2", "dense_3"]
    # Layers and models pickle (no reference to a model is kept).
    import pickle

    assert pickle.loads(pickle.dumps(shared)).name == "dense_2"


def _summary_lines(m):
    lines = []
    m.summary(print_fn=lines.append)
    return [line.strip() for line in lines[0].splitlines() if "(Dense)" in line]


def test_a_checkpoint_or_step_the_trace_lacks_is_a_lookup_or_value_error(tmp_path):
    x, y = data()
    model().fit(x, y, epochs=2, verbose=0, record=trainrr.record(tmp_path / "run.trr", checkpoint_every=1))
    trace = trainrr.open(tmp_path / "run.trr")
    with pytest.raises(KeyError) as e:
        trace.checkpoint(100)
    assert isinstance(e.value, trainrr.TraceError) and isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{tmp_path / 'run.trr'}: no checkpoint after 100 steps (it holds those after 0, "), str(e.value)
    with pytest.raises(ValueError, match=r"^replay: from_step=500 is past the run's end: it has steps 0\.\.1$") as e:
        trainrr.replay(tmp_path / "run.trr", from_step=500)
    assert isinstance(e.value, trainrr.TraceError)


def test_keras_defaults_of_arguments_the_engine_lacks_are_taken():
    x, y = data()
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"], run_eagerly=False, jit_compile="auto")
    m.fit(x, y, verbose=0, callbacks=None, validation_data=None, sample_weight=None, class_weight=None,
          initial_epoch=0, workers=1, use_multiprocessing=False)
    with pytest.warns(UserWarning, match="has been fitted before"):
        m.fit(x, y, verbose=0, callbacks=[])  # no callback either
    m.evaluate(x, y, verbose=0, sample_weight=None, steps=None, callbacks=None)
    m.predict(x, steps=None, callbacks=None)
    # tf.keras 2's defaults (None) and empty collections where the default is None are unset too.
    m.compile(optimizer="sgd", loss="binary_crossentropy", run_eagerly=None, jit_compile=None,
              steps_per_execution=None, weighted_metrics=[])
    with pytest.warns(UserWarning, match="has been fitted before"):
        m.fit(x, y, verbose=0, class_weight={})
    # Any other value asks for what the engine lacks.
    for call, key, value in [(m.fit, "validation_data", (x, y)), (m.fit, "initial_epoch", 1),
                             (m.fit, "class_weight", {0: 1.0, 1: 2.0}), (m.evaluate, "sample_weight", np.ones(20)),
                             (m.predict, "steps", 1)]:
        with pytest.raises(trainrr.ConfigError, match=rf"argument '{key}' is not supported: trainrr's engine has no "
                           rf"such setting \(only Keras' default, .*, is taken\)"):
            call(x, y, verbose=0, **{key: value}) if call != m.predict else call(x, **{key: value})
    with pytest.raises(trainrr.ConfigError, match=r"^compile: argument 'run_eagerly' is not supported"):
        m.compile(optimizer="sgd", loss="binary_crossentropy", run_eagerly=True)


def test_only_a_fits_own_folder_is_named_as_the_arrays_given_to_fit(tmp_path):
    import tempfile

    from trainrr import _errors

    gone = os.path.join(tempfile.gettempdir(), "trainrr-gone1234")
    assert not os.path.exists(gone)
    assert _errors.python_terms(f"data file {gone}/x.npy is missing", "replay") == \
        "data file the x given to fit is missing"
    # A folder of the user's own is named as it is, whatever its name.
    mine = tempfile.mkdtemp(prefix="trainrr-", dir=tempfile.gettempdir())
    try:
        message = f"data file {mine}/y.npy is missing"
        assert _errors.python_terms(message, "replay") == message
    finally:
        shutil.rmtree(mine)


def test_a_checkpoint_past_damage_is_neither_listed_nor_handed_out(tmp_path):
    # As replay and export refuse it: the messages before it no longer vouch for it. Step 1's message is
    # changed, and the trace's index, read from its footer, still lists every checkpoint.
    x, y = data(rows=64)
    m = trainrr.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1, activation="sigmoid")])
    # One seed and one batch order (no first-ready loader): the same bytes, and the same byte changed, every time.
    m.compile(optimizer="adam", loss="binary_crossentropy", policy="deterministic")
    m.fit(x, y, epochs=2, batch_size=8, verbose=0,
          record=trainrr.record(tmp_path / "run.trr", checkpoint_every=4, seed=1))
    whole = trainrr.open(tmp_path / "run.trr")
    assert whole.checkpoints() == [0, 4, 8, 12, 16]
    damaged = bytearray((tmp_path / "run.trr").read_bytes())
    damaged[whole.steps()[1]["offset"] + 40] ^= 0x08
    (tmp_path / "damaged.trr").write_bytes(bytes(damaged))
    trace = trainrr.open(tmp_path / "damaged.trr")
    assert trace.stop and not trace.truncated and len(trace.steps()) == 1, trace.stop
    assert trace.checkpoints() == [0]
    assert list(trace.checkpoint(0)) == list(whole.checkpoint(0))
    for step in (4, 16):
        with pytest.raises(trainrr.TraceError,
                           match=rf"changed after it was written .*: the checkpoint at step {step} \(byte \d+\) "
                                 rf"cannot be read$"):
            trace.checkpoint(step)
    with pytest.raises(trainrr.TraceError, match=r"no checkpoint after 5 steps \(it holds those after 0 steps\)$"):
        trace.checkpoint(5)


@pytest.mark.parametrize("label, held", [(2**24 + 1, "16777216"), (2**31 - 1, "2147483648"),
                                         (2.0**53 + 2, "9007199254740992")])
def test_a_class_index_float32_cannot_hold_is_named_as_given(label, held):
    x, _ = data(rows=10)
    y = np.where(np.arange(10) == 7, label, 1)
    m = trainrr.Sequential([layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(trainrr.DataError, match=rf"^y: the label of row 7 \(counting from 0\) is {int(label)}\.?0?, "
                       rf"which float32 \(the type class indices are trained as\) holds as {held}: "
                       rf"sparse_categorical_crossentropy needs class indices, integers from 0 below the model's "
                       rf"outputs$"):
        m.fit(x, y, epochs=1, verbose=0)


def test_a_fraction_float32_rounds_to_a_class_index_is_named_as_given():
    x, _ = data(rows=10)
    y = np.where(np.arange(10) == 3, 0.99999999, 1.0)
    m = trainrr.Sequential([layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(trainrr.DataError, match=r"^y: the label of row 3 \(counting from 0\) is (np\.float64\()?"
                       r"0\.99999999\)?, which float32 \(the type class indices are trained as\) rounds to 1: "
                       r"sparse_categorical_crossentropy needs class indices, integers from 0$"):
        m.fit(x, y, epochs=1, verbose=0)


def test_a_model_larger_than_the_memory_left_is_a_device_error(tmp_path):
    # In a child process: the address-space limit would stay with this one. Conv2D's output for a batch of 64
    # images of 256 x 256 with 64 filters is 1 GiB.
    import subprocess
    import sys
    code = """
import resource, numpy as np, trainrr
from trainrr import layers
resource.setrlimit(resource.RLIMIT_AS, (900 << 20, 900 << 20))
x = np.zeros((64, 256, 256, 1), np.float32); y = np.zeros(64, np.int64)
m = trainrr.Sequential([layers.Conv2D(64, 3, padding="same"), layers.Flatten(), layers.Dense(2, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
try:
    m.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1, record=trainrr.record(%r))
except trainrr.DeviceError as e:
    print("DeviceError:", e)
""" % str(tmp_path / "big.trr")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "DeviceError: fit: the model's tensors for a batch of 64 take at least " in out.stdout, out.stdout
    assert "(the address-space limit (ulimit -v)): a smaller batch_size, data shape or model takes less" in out.stdout
    assert not (tmp_path / "big.trr").exists()
