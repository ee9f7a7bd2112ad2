"""The Keras-shaped API: what fit, evaluate and predict return and print, what a recording holds, and what
trainrr.open reads back."""

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import trainrr
from trainrr import layers, optimizers

from conftest import BIN, EXAMPLES, SOURCE_DIR, cli


def blobs(rows=240, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] > 0).astype(np.int64)
    return x, y


def classifier():
    model = trainrr.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], threads=1)
    return model


def test_history_holds_keras_keys_one_value_per_epoch():
    x, y = blobs()
    history = classifier().fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, seed=1)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 3 for v in history.history.values())
    assert history.epoch == [0, 1, 2] and history.params["steps"] == 12  # 180 training rows in batches of 16
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_without_metrics_the_history_holds_the_loss_alone(capsys):
    x, y = blobs()
    model = trainrr.Sequential([layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    assert list(model.fit(x, y, verbose=0).history) == ["loss"]
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    # The epoch lines say what history holds, as Keras prints them: no accuracy that was not asked for.
    assert list(model.fit(x, y, verbose=2, validation_split=0.2).history) == ["loss", "val_loss"]
    line = capsys.readouterr().out.splitlines()[0]
    assert " - loss: " in line and " - val_loss: " in line and "accuracy" not in line, line


def test_epoch_lines_keras_style_and_quiet_with_verbose_0(capsys):
    x, y = blobs()
    classifier().fit(x, y, epochs=2, verbose=1, seed=1)
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[:2] for line in out] == [["Epoch 1/2", "8 steps"], ["Epoch 2/2", "8 steps"]]
    assert "loss: " in out[0] and "accuracy: " in out[0]
    classifier().fit(x, y, epochs=2, verbose=0, seed=1)
    assert capsys.readouterr().out == ""


def test_a_seeded_run_trains_the_same_weights_every_time():
    x, y = blobs()
    a, b = classifier(), classifier()
    a.fit(x, y, epochs=2, verbose=0, seed=5)
    b.fit(x, y, epochs=2, verbose=0, seed=5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert wa.tobytes() == wb.tobytes()


def test_evaluate_and_predict_agree_with_each_other():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=4, verbose=0, seed=2)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    p = model.predict(x)
    assert p.shape == (240, 2) and p.dtype == np.float32
    assert accuracy == pytest.approx(np.mean(p.argmax(axis=1) == y))
    nll = -np.log(p[np.arange(len(y)), y].astype(np.float64))
    assert loss == pytest.approx(nll.mean(), rel=1e-5)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": accuracy}


def test_predict_hands_over_the_engine_result_without_a_copy():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, verbose=0, seed=2)
    p = model.predict(x)
    assert not p.flags.owndata and p.base is not None  # the array's memory is the engine's tensor
    assert p.flags.c_contiguous and p.flags.writeable


def test_the_recording_context_records_the_fit_inside_it(tmp_path):
    x, y = blobs()
    with trainrr.record(tmp_path / "run.trr", level="layer", seed=42, checkpoint_every=5) as rec:
        history = classifier().fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert history.trace == rec.trace == str(tmp_path / "run.trr")
    assert rec.seed == 42 and rec.bytes == os.path.getsize(tmp_path / "run.trr")
    trace = trainrr.open(tmp_path / "run.trr")
    assert trace.seed == 42 and trace.header["level"] == "layer" and trace.header["checkpoint_every"] == 5
    assert trace.environment["threads"] == "1"
    steps = trace.steps()
    assert [s["step"] for s in steps] == list(range(16))
    assert [s["epoch"] for s in steps] == [1] * 8 + [2] * 8
    assert steps[0]["events"][0]["type"] == "rng" and "params" in steps[0]
    assert any(e["type"] == "probe" and e["site"] == "dense_1:out" for e in steps[3]["events"])
    losses = trace.losses()
    assert losses.dtype == np.float64 and np.array_equal(losses, [s["loss"] for s in steps])
    assert trace.checkpoints() == [0, 5, 10, 15, 16]
    assert [e["logs"]["loss"] for e in trace.epochs()] == pytest.approx(history.history["loss"])
    footer = trace.footer()
    assert footer["completed"] and footer["step_count"] == 16


def test_checkpoints_hold_the_initial_and_the_trained_weights(tmp_path):
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=2, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=9))
    trace = trainrr.open(tmp_path / "run.trr")
    initial, final = trace.checkpoint(0), trace.checkpoint(trace.checkpoints()[-1])
    assert list(initial)[:4] == ["dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"]
    assert initial["dense_1.kernel"].shape == (6, 8) and initial["dense_1.kernel"].dtype == np.float32
    assert not initial["dense_1.bias"].any()  # biases start at zero, as in Keras
    limit = np.sqrt(6 / (6 + 8))  # glorot_uniform
    assert np.abs(initial["dense_1.kernel"]).max() <= limit
    for trained, recorded in zip(model.get_weights(), list(final.values())[:4]):
        assert trained.tobytes() == recorded.tobytes()
    # The same seed in another run starts from the same weights.
    again = classifier()
    again.fit(x, y, epochs=1, verbose=0, record=trainrr.record(tmp_path / "again.trr", seed=9))
    assert trainrr.open(tmp_path / "again.trr").checkpoint(0)["dense_1.kernel"].tobytes() == \
        initial["dense_1.kernel"].tobytes()


def test_diff_of_two_recordings(tmp_path):
    x, y = blobs()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        classifier().fit(x, y, verbose=0, record=trainrr.record(tmp_path / f"{name}.trr", seed=seed))
    same = trainrr.diff(tmp_path / "a.trr", tmp_path / "b.trr")
    assert same.status == "identical" and same.exit_code == 0
    other = trainrr.diff(tmp_path / "a.trr", tmp_path / "c.trr")
    assert other.status == "diverged" and other.first_divergence.step == 0
    assert other.cause.category == "config", other.text()


def test_bisect_of_a_run_a_free_replay_reproduces(tmp_path):
    x, y = blobs()
    classifier().fit(x, y, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=4))
    report = trainrr.bisect(tmp_path / "run.trr")
    assert report.command == "bisect" and report.status == "reproduced", report.text()


def test_a_reports_notes_and_facts_name_the_python_arguments(tmp_path):
    # The replayer words its notes for the command line; read from Python, they name the arguments of
    # trainrr.replay and trainrr.record, and bisect's replay_with is the trainrr.replay call that replays it.
    x, y = blobs()
    trace = str(tmp_path / "run.trr")
    model = trainrr.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.3),
                                layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", policy="deterministic", threads=2)
    model.fit(x, y, epochs=2, verbose=0, record=trainrr.record(trace, level="layer", seed=1))
    x2 = x.copy()
    x2[100, 3] += 0.5
    np.save(tmp_path / "x2.npy", x2)

    def notes(**kwargs):
        report = trainrr.replay(trace, **kwargs)
        for text in report.notes + [v for v in report.facts.values() if isinstance(v, str)]:
            assert not re.search(r"--[a-z]", text), text  # no option of the command
        return " | ".join(report.notes)

    assert "with no step run (keep_going=True trains on)" in notes(overrides={"seed": 2}, force="none")
    assert "with no step run (keep_going=True trains on)" in notes(overrides={"seed": 2}, force=[])
    assert 'the forced choices (force="all") serve the recorded values' in notes(overrides={"seed": 2})
    assert 'record with trainrr.record(..., level="op") to compare every op' in notes(
        overrides={"runtime.threads": 1})
    assert "(data=) is used in place of the copy the trace embeds" in notes(data=tmp_path / "x2.npy",
                                                                             allow_data_change=True)
    assert "to_step=500 is past the run's end" in notes(to_step=500)
    assert 'overrides={"train.epochs": 2} changes nothing' in notes(overrides={"train.epochs": 2})
    # The json attribute and the text stay the command's own.
    assert any("--to-step 500 is past" in n for n in trainrr.replay(trace, to_step=500).json["notes"])

    report = trainrr.bisect(trace, overrides={"seed": 5})
    assert report.status == "diverged", report.text()
    assert report.facts["minimal_forced_choices"] == "rng (the run's seed)", report.facts
    call = report.facts["replay_with"]
    assert call == f'trainrr.replay({json.dumps(trace)}, force="rng", overrides={{"seed": 5}})', call
    # The call it offers is one to make as it stands: it replays the run bit for bit.
    assert eval(call, {"trainrr": trainrr}).status == "reproduced"
    assert "--force rng --set seed=5" in report.json["facts"]["replay_with"]


def test_to_config_and_from_config_describe_the_same_run(tmp_path):
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    model.to_config(tmp_path / "run.toml")
    again = trainrr.Sequential.from_config(tmp_path / "run.toml")
    # The engine's description of each layer holds every argument; those at their defaults are left out, as
    # the model gave them.
    assert [layer.items() for layer in again.layers] == [layer.items() for layer in model.layers] == [
        [("type", "Dense"), ("units", 8), ("activation", "tanh")],
        [("type", "Dense"), ("units", 2), ("activation", "softmax")]]
    again.fit(verbose=0)
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_from_config_evaluates_its_test_split():
    # The example's default policy lets its loader's two threads race: the deterministic policy trains the same
    # weights in every run, so that two runs can be compared.
    config, policy = os.path.join(EXAMPLES, "breast_cancer.toml"), "runtime.policy=deterministic"
    model = trainrr.Sequential.from_config(config, overrides=[policy])
    model.fit(verbose=0)
    loss, accuracy = model.evaluate(verbose=0)
    # `trainrr train` prints the same figures for this configuration.
    p = cli("train", config, "--set", policy)
    assert f"test: loss {loss:.4f} - accuracy {accuracy:.4f} (114 rows)" in p.stdout


def test_the_gil_is_released_while_training():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=4096)
    model = trainrr.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", threads=1)
    done = threading.Event()
    took = []

    def train():
        start = time.perf_counter()
        model.fit(x, y, epochs=100, verbose=0, seed=1)
        took.append(time.perf_counter() - start)
        done.set()

    t = threading.Thread(target=train)
    last = time.perf_counter()
    t.start()
    longest_wait = 0.0
    while not done.is_set():
        now = time.perf_counter()
        longest_wait, last = max(longest_wait, now - last), now
    t.join()
    assert took[0] > 0.5, "the fit ended too soon to tell"
    # With the GIL held by the training, this loop would wait for the whole of it at once.
    assert longest_wait < took[0] / 3, f"this thread waited {longest_wait:.2f} s of the fit's {took[0]:.2f} s"


def test_ctrl_c_stops_after_the_current_step_and_leaves_a_readable_trace(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, threading, numpy as np, trainrr
        from trainrr import layers
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4096, 64)).astype(np.float32)
        y = rng.integers(0, 10, size=4096)
        model = trainrr.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", threads=1)
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            model.fit(x, y, epochs=1000, batch_size=32, verbose=0, record=trainrr.record("run.trr", seed=1))
            print("not interrupted")
        except KeyboardInterrupt as e:
            print("KeyboardInterrupt:", e)
    """)
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("KeyboardInterrupt: fit: interrupted at step "), p.stdout
    assert "the trace run.trr holds every step before it" in p.stdout
    stopped_at = int(p.stdout.split("interrupted at step ")[1].split(";")[0])
    trace = trainrr.open(tmp_path / "run.trr")
    footer = trace.footer()
    assert footer is not None and not footer["completed"] and "interrupted" in footer["end_reason"]
    assert 0 < len(trace.steps()) == stopped_at < 1000 * 128
    # The state it stopped in is kept, for export and resumption, as at the end of a completed run.
    assert trace.checkpoints() == [0, stopped_at], trace.checkpoints()
    assert trainrr.replay(tmp_path / "run.trr").status == "reproduced"
    assert cli("show", tmp_path / "run.trr").returncode == 0


def test_a_ctrl_c_the_process_ignores_stays_ignored_during_fit(tmp_path):
    # A script a shell started in the background ignores Ctrl-C: fit leaves it so, and runs to its end.
    script = textwrap.dedent(f"""
        import os, signal, threading, numpy as np, trainrr
        from trainrr import layers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1024, 64)).astype(np.float32)
        y = rng.integers(0, 10, size=1024)
        model = trainrr.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", threads=1)
        fitting, sent = threading.Event(), []
        def ctrl_c():  # Ctrl-C again and again while the fit runs
            fitting.wait()
            while fitting.is_set():
                os.kill(os.getpid(), signal.SIGINT)
                sent.append(1)
                threading.Event().wait(0.01)
        t = threading.Thread(target=ctrl_c)
        t.start()
        try:
            fitting.set()
            model.fit(x, y, epochs=15, batch_size=32, verbose=0, record=trainrr.record("run.trr", seed=1))
            fitting.clear()
            t.join()
            print("completed", len(sent) > 0)
        except KeyboardInterrupt as e:
            print("KeyboardInterrupt:", e)
    """)
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ), timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "completed True", p.stdout
    footer = trainrr.open(tmp_path / "run.trr").footer()
    assert footer is not None and footer["completed"], footer


def test_a_configuration_with_augmentation_keeps_it_when_fit_on_arrays(tmp_path):
    config = tmp_path / "noisy.toml"
    config.write_text('seed = 1\n[data]\nsource = "synthetic"\nshape = [6]\nclasses = 2\nsamples = 64\n'
                      '[augment]\nnoise_stddev = 0.5\n[[model.layers]]\ntype = "Dense"\nunits = 2\n'
                      'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\n')
    model = trainrr.Sequential.from_config(config)
    x, y = blobs()
    model.fit(x, y, verbose=0, record=tmp_path / "run.trr")
    assert "[augment]\nnoise_stddev = 0.5" in model.to_config()
    draws = [e["site"] for s in trainrr.open(tmp_path / "run.trr").steps() for e in s["events"] if e["type"] == "rng"]
    assert "augment/noise" in draws


def test_a_second_fit_warns_that_it_starts_again_from_the_initial_weights():
    x, y = blobs()
    model = classifier()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first fit warns of nothing
        first = model.fit(x, y, epochs=2, verbose=0, seed=1)
    with pytest.warns(UserWarning) as caught:
        second = model.fit(x, y, epochs=2, verbose=0, seed=1)
    message = str(caught[0].message)
    assert message.startswith("fit: this model has been fitted before; this fit starts again from the initial "
                              "weights its seed draws, not from the current weights as Keras' fit would")
    assert "fit once with the total number of epochs" in message and "(seed=1)" in message
    assert caught[0].filename == __file__
    # What it says: the second fit, given the first one's seed and arguments, trained as the first did, and a
    # fit of the total number of epochs with that seed starts as they did.
    assert second.history["loss"] == first.history["loss"]
    longer = classifier().fit(x, y, epochs=4, verbose=0, seed=1)
    assert longer.history["loss"][:2] == first.history["loss"]
    # A fit refused before it trains (a NaN in x, a label out of range) starts nothing, and warns of nothing.
    bad_x = x.copy()
    bad_x[5, 2] = np.nan
    bad_y = y.copy()
    bad_y[7] = 9
    for args in ((bad_x, y), (x, bad_y)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(trainrr.DataError):
                model.fit(*args, epochs=1, verbose=0, seed=1)


def test_fit_arguments_are_per_call_as_in_keras():
    x, y = blobs()
    model = classifier()
    first = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, shuffle=False, verbose=0, seed=1)
    assert list(first.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    with pytest.raises(ValueError, match="batches of 16"):
        model.evaluate(x, y, batch_size=32, verbose=0)
    # A bare fit takes none of the earlier fit's arguments: Keras' defaults, one epoch of batches of 32 over
    # every row, shuffled, no validation, and a seed of its own.
    with pytest.warns(UserWarning, match="fitted before"):
        bare = model.fit(x, y, verbose=0)
    assert list(bare.history) == ["loss", "accuracy"] and bare.epoch == [0] and bare.params["steps"] == 8
    text = model.to_config()
    assert "epochs = 1\n" in text and "batch_size = 32\n" in text and "shuffle = true\n" in text
    assert "validation_split" not in text and not text.startswith("seed = 1\n")
    # evaluate runs in the last fit's batches, to_config describes the last fit.
    model.evaluate(x, y, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match="batches of 32"):
        model.evaluate(x, y, batch_size=16, verbose=0)


def test_a_model_read_from_a_configuration_starts_every_fit_from_its_settings(tmp_path):
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=1)
    model.to_config(tmp_path / "run.toml")
    again = trainrr.Sequential.from_config(tmp_path / "run.toml")
    assert again.fit(x, y, epochs=3, verbose=0).epoch == [0, 1, 2]
    with pytest.warns(UserWarning, match="fitted before"):
        history = again.fit(x, y, verbose=0)
    # The configuration's two epochs of batches of 16 and its seed, not the earlier fit's three epochs.
    assert history.epoch == [0, 1] and history.params["steps"] == 15
    assert again.to_config().startswith("seed = 1\n")


def test_to_config_refuses_to_write_arrays_changed_in_place_since_the_fit(tmp_path):
    x, y = blobs()
    y = y.astype(np.float32)  # float32 and C-contiguous, as x: fit keeps both uncopied
    model = classifier()
    model.fit(x, y, epochs=1, verbose=0, seed=1)
    trained_on = x.copy()
    x *= 2
    # The text alone holds no array: written as ever.
    assert model.to_config().startswith("seed = 1\n")
    with pytest.raises(trainrr.DataError) as e:
        model.to_config(tmp_path / "cli" / "run.toml")
    assert str(e.value).startswith("to_config: x has changed since the fit (in place): ")
    assert "x.npy would not hold the rows the fit trained on" in str(e.value) and "x.copy()" in str(e.value)
    assert not (tmp_path / "cli").exists()  # nothing is written
    y[0] = 1 - y[0]
    with pytest.raises(trainrr.DataError, match="^to_config: x and y have changed since the fit") as e:
        model.to_config(tmp_path / "cli" / "run.toml")
    assert "give fit a copy (x.copy() and y.copy())" in str(e.value)
    x /= 2
    with pytest.raises(trainrr.DataError, match="^to_config: y has changed since the fit") as e:
        model.to_config(tmp_path / "cli" / "run.toml")
    assert "give fit a copy (y.copy())" in str(e.value)
    x *= 2
    # Back as the fit had them, they are written.
    x /= 2
    y[0] = 1 - y[0]
    model.to_config(tmp_path / "cli" / "run.toml")
    assert np.load(tmp_path / "cli" / "x.npy").tobytes() == trained_on.tobytes()


def test_layers_take_the_names_the_engine_gives_them_and_keep_a_given_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    loose = layers.Dense(2, activation="softmax")
    assert loose.name is None  # in no model yet
    model = trainrr.Sequential([layers.Conv2D(2, 3), layers.BatchNormalization(), layers.MaxPooling2D(),
                                layers.Activation("relu"), layers.Flatten(), layers.Dropout(0.1),
                                layers.Dense(4, name="hidden"), loose])
    names = ["conv2d_1", "batch_normalization_1", "max_pooling2d_1", "activation_1", "flatten_1", "dropout_1",
             "hidden", "dense_1"]
    assert [layer.name for layer in model.layers] == names
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", threads=1)
    model.fit(x, y, verbose=0, seed=1)
    assert [layer.name for layer in model.layers] == names
    lines = []
    model.summary(print_fn=lines.append)
    assert [line.split()[0] for line in lines[0].splitlines()[:len(names)]] == names
    assert 'name = "dense_1"' not in model.to_config()  # the configuration leaves the engine's names to it


def test_metrics_are_reported_under_the_name_given():
    x, y = blobs()
    model = classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"], threads=1)
    history = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0, seed=1)
    assert list(history.history) == ["loss", "acc", "val_loss", "val_acc"]
    assert list(model.evaluate(x, y, verbose=0, return_dict=True)) == ["loss", "acc"]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], threads=1)
    with pytest.warns(UserWarning, match="fitted before"):
        history = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0, seed=1)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert list(model.evaluate(x, y, verbose=0, return_dict=True)) == ["loss", "accuracy"]


def test_epoch_lines_name_the_metric_as_given(capsys):
    x, y = blobs()
    model = classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"], threads=1)
    model.fit(x, y, epochs=1, validation_split=0.25, verbose=2, seed=1)
    line = capsys.readouterr().out
    assert " - acc: " in line and " - val_acc: " in line and "accuracy" not in line


def test_summary_counts_every_weight_as_keras_does():
    x, y = blobs()
    model = trainrr.Sequential([layers.Dense(64, activation="relu"), layers.BatchNormalization(),
                                layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", threads=1)
    model.fit(x, y, verbose=0, seed=1)
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    # gamma and beta (trained), moving mean and variance (not): 4 x 64, as Keras counts them.
    assert "batch_normalization_1 (BatchNormalization) -> (64,), 256 params\n" in text
    total = sum(w.size for w in model.get_weights())
    assert total == 6 * 64 + 64 + 256 + 64 * 2 + 2
    assert text.endswith(f"Total params: {total}\n  Trainable params: {total - 128}\n"
                         f"  Non-trainable params: 128")


def test_replay_data_is_the_samples_and_a_labels_file_there_says_how_to_replace_the_labels(tmp_path):
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=1, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=1))
    changed = y.astype(np.float32)
    changed[3] = 1 - changed[3]
    np.save(tmp_path / "y2.npy", changed)
    with pytest.raises(trainrr.TraceError) as e:
        trainrr.replay(tmp_path / "run.trr", data=tmp_path / "y2.npy", allow_data_change=True)
    assert str(e.value).endswith("(data= replaces the samples' file, x; the labels' file is replaced with "
                                 "overrides={\"data.labels\": PATH})"), str(e.value)
    report = trainrr.replay(tmp_path / "run.trr", overrides={"data.labels": str(tmp_path / "y2.npy")},
                            allow_data_change=True)
    assert report.status == "diverged" and "first difference at row 3" in str(report), str(report)


def test_get_weights_is_in_keras_order_layer_by_layer():
    # Keras: a layer's weights together, BatchNormalization's as [gamma, beta, moving_mean, moving_variance],
    # so that the list can be given to a Keras model of the same layers.
    x, y = blobs()
    model = trainrr.Sequential([layers.Dense(5, activation="relu"), layers.BatchNormalization(),
                                layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", threads=1)
    model.fit(x, y, verbose=0, seed=1)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(6, 5), (5,), (5,), (5,), (5,), (5,), (5, 2), (2,)]
    state = model._trained("test").weights()  # the engine's weights, by name
    order = ["dense_1.kernel", "dense_1.bias", "batch_normalization_1.gamma", "batch_normalization_1.beta",
             "batch_normalization_1.moving_mean", "batch_normalization_1.moving_variance",
             "dense_2.kernel", "dense_2.bias"]
    for got, name in zip(weights, order):
        assert got.tobytes() == state[name].tobytes(), name


def test_a_steps_loss_is_its_batchs_and_its_accuracy_the_epochs_so_far(tmp_path):
    # As docs/traces.md says: gradient digests at level layer only (at level op the gradients are probed as
    # ops); a step's accuracy is the epoch's so far, its loss the batch's.
    x, y = blobs()
    for level in ("step", "layer", "op"):
        classifier().fit(x, y, epochs=2, batch_size=64, verbose=0,
                         record=trainrr.record(tmp_path / f"{level}.trr", level=level, seed=1))
    grads = {level: [s["grads"] for s in trainrr.open(tmp_path / f"{level}.trr").steps()]
             for level in ("step", "layer", "op")}
    assert all(g == {} for g in grads["step"] + grads["op"])
    assert all(len(g) == 4 for g in grads["layer"])
    op_sites = {e["site"] for s in trainrr.open(tmp_path / "op.trr").steps() for e in s["events"]
                if e["type"] == "probe"}
    assert any(site.endswith(".bwd_weight:out") for site in op_sites), sorted(op_sites)
    trace = trainrr.open(tmp_path / "step.trr")
    steps, epochs = trace.steps(), trace.epochs()
    per_epoch = len(steps) // 2
    for e, epoch in enumerate(epochs):
        mine = steps[e * per_epoch:(e + 1) * per_epoch]
        assert mine[-1]["metrics"]["accuracy"] == epoch["logs"]["accuracy"]  # the last step's is the epoch's
        assert np.mean([s["metrics"]["accuracy"] for s in mine]) != epoch["logs"]["accuracy"]
    # The loss of a step is its batch's: the epoch's loss is their mean weighted by the batches' rows
    # (240 rows in batches of 64: 64, 64, 64, 48).
    losses = np.array([s["loss"] for s in steps[:per_epoch]])
    rows = np.array([64, 64, 64, 48])
    assert np.isclose((losses * rows).sum() / rows.sum(), epochs[0]["logs"]["loss"], rtol=1e-6)
    assert not np.isclose(losses[-1], epochs[0]["logs"]["loss"])


def test_an_opened_trace_says_how_reading_went_before_any_steps_are_read(tmp_path):
    x, y = blobs()
    classifier().fit(x, y, epochs=2, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=1))
    whole = trainrr.open(tmp_path / "run.trr")
    assert whole.stop is None and whole.truncated is False and whole.notes == []
    # Cut inside step 10, as a recording killed there leaves it.
    (tmp_path / "cut.trr").write_bytes((tmp_path / "run.trr").read_bytes()[: whole.steps()[10]["offset"] + 10])
    cut = trainrr.open(tmp_path / "cut.trr")
    assert cut.truncated is True and "truncated" in cut.stop and cut.notes == []
    assert len(cut.steps()) == 10 and cut.footer() is None
    # Cut between two messages, without its footer, as a recording killed between them leaves it: the same.
    footer_at = whole.footer()["offset"]
    (tmp_path / "no-footer.trr").write_bytes((tmp_path / "run.trr").read_bytes()[:footer_at])
    no_footer = trainrr.open(tmp_path / "no-footer.trr")
    assert no_footer.truncated is True and no_footer.notes == [], no_footer.stop
    assert no_footer.stop.endswith(f"no-footer.trr: the file ends at byte {footer_at} after a complete message, "
                                   "with no footer (the recording was killed or crashed)"), no_footer.stop
    assert len(no_footer.steps()) == len(whole.steps()) and no_footer.footer() is None
    # A replay of the cut trace compares the steps it holds, and is no whole run reproduced.
    report = trainrr.replay(tmp_path / "cut.trr")
    assert report.status == "truncated" and not report.reproduced, report.text()
    assert "status is 'reproduced'" in trainrr.Report.reproduced.__doc__
    # `if report:` is no test of reproduction: a report has no truth value, and says what to ask instead.
    with pytest.raises(TypeError, match=r"status is 'truncated'.*report\.reproduced"):
        bool(report)
    with pytest.raises(TypeError, match="ambiguous"):
        assert trainrr.replay(tmp_path / "run.trr")


def test_an_opened_trace_reads_its_own_file_after_another_run_is_recorded_to_its_path(tmp_path):
    # A notebook cell run again records a new run to the same path: a Trace opened before reads the run whose
    # header it read, never that header with the new run's steps.
    x, y = blobs()
    path = tmp_path / "run.trr"
    classifier().fit(x, y, epochs=3, batch_size=16, verbose=0, record=trainrr.record(path, seed=1))
    first = trainrr.open(path)
    small = trainrr.Sequential([layers.Dense(2, activation="softmax")])
    small.compile(loss="sparse_categorical_crossentropy")
    small.fit(x[:40], y[:40], verbose=0, record=trainrr.record(path, seed=9))
    again = trainrr.open(path)
    assert (first.seed, again.seed) == (1, 9)
    assert len(first.losses()) == len(first.steps()) == 45 and len(first.epochs()) == 3
    assert first.footer()["step_count"] == 45 and first.stop is None and first.truncated is False
    assert first.checkpoints() == [0, 45] and "dense_2.kernel" in first.checkpoint(45)
    assert len(again.losses()) == 2 and again.footer()["step_count"] == 2 and again.checkpoints() == [0, 2]
    # Every step of the first run, in order, though its file is no longer at that path.
    assert [s["step"] for s in first.steps()] == list(range(45))


def test_a_python_run_is_recorded_as_python_under_the_working_folder(tmp_path):
    # The recorder makes every configuration's path absolute: a Python run's is <python> in the fit's folder.
    x, y = blobs()
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        classifier().fit(x, y, verbose=0, record="run.trr")
    finally:
        os.chdir(here)
    assert trainrr.open(tmp_path / "run.trr").header["config_path"] == os.path.join(str(tmp_path), "<python>")


def test_to_config_writes_exactly_the_last_fit_and_a_compile_since_leaves_a_model_not_trained(tmp_path):
    x, y = blobs()
    model = trainrr.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", policy="deterministic")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=3))
    # The run the fit recorded, word for word.
    assert model.to_config() == trainrr.open(tmp_path / "run.trr").config
    model.compile(optimizer=optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy", threads=2)
    with pytest.raises(trainrr.ConfigError, match="^predict: the model has not been trained since its last compile"):
        model.predict(x)
    # Compiled again, the model is not the one the fit trained: its configuration is the new compile's, with
    # fit's defaults, as before any fit; nothing of the earlier fit (seed, epochs, policy, arrays) is mixed in.
    text = model.to_config(tmp_path / "cli" / "run.toml")
    fresh = trainrr.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(2, activation="softmax")])
    fresh.compile(optimizer=optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy", threads=2)
    assert text == fresh.to_config()
    assert "seed" not in text and "[data]" not in text and "policy" not in text and "epochs = 1\n" in text
    assert not (tmp_path / "cli" / "x.npy").exists()
    # The next fit starts from fit's defaults too (one epoch), and to_config is then that fit.
    with pytest.warns(UserWarning, match="fitted before"):
        history = model.fit(x, y, verbose=0, seed=4)
    assert len(history.history["loss"]) == 1
    text = model.to_config()
    assert text.startswith("seed = 4\n") and 'type = "sgd"' in text and "threads = 2" in text
    assert "epochs = 1\n" in text and "batch_size = 32\n" in text


def test_ctrl_c_stops_a_replay_or_a_bisect_before_its_next_step(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, threading, numpy as np, trainrr
        from trainrr import layers
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4096, 64)).astype(np.float32)
        y = rng.integers(0, 10, size=4096)
        model = trainrr.Sequential([layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", threads=1, policy="deterministic")
        model.fit(x, y, epochs=100, batch_size=32, verbose=0, record=trainrr.record("run.trr", seed=1))
        for command in (trainrr.replay, trainrr.bisect):
            threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            try:
                command("run.trr")
                print("not interrupted")
            except KeyboardInterrupt as e:
                print("KeyboardInterrupt:", e)
        print("afterwards:", trainrr.replay("run.trr", to_step=2).status)
    """)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 3 and lines[2] == "afterwards: reproduced", p.stdout
    for line, command in zip(lines, ("replay", "bisect")):
        # Stopped before the replay's end (12800 steps), not after it.
        assert line.startswith(f"KeyboardInterrupt: {command}: interrupted at step "), p.stdout
        assert 0 < int(line.rsplit(" ", 1)[1]) < 12800, p.stdout
    # Nothing is left behind: the copies of the embedded arrays the replays made are gone.
    assert os.listdir(scratch) == []


def test_str_of_a_bisect_report_is_the_commands_text_with_its_result_line(tmp_path, bin_path):
    x, y = blobs()
    model = trainrr.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", threads=1, policy="deterministic")
    model.fit(x, y, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=4))
    # Under the portable policy the free replay picks other matmul kernels: it diverges, and forcing the
    # recorded ones reproduces.
    report = trainrr.bisect(tmp_path / "run.trr", overrides={"runtime.policy": "portable"})
    p = cli("bisect", tmp_path / "run.trr", "--set", 'runtime.policy="portable"', check=False)
    assert report.exit_code == p.returncode == 1, p.stderr
    assert str(report) == report.text() == p.stdout
    text = str(report)
    assert text.startswith("stage 1 (no execution): ") and "\nstage 3: " in text
    assert "\nresult: force " in text and "--force kernels" in text
    assert repr(report).startswith("<trainrr.Report bisect: diverged at step 0")


@pytest.mark.parametrize("cls, signature", [
    # Past the arguments trainrr shares with Keras, by position, Keras' next (bias_initializer, data_format,
    # axis, noise_shape) are refused by name: the rest are given by name.
    (layers.Dense, "(units, activation=None, use_bias=True, kernel_initializer='glorot_uniform', *args, "
                   "name=None, **kwargs)"),
    (layers.Conv2D, "(filters, kernel_size, strides=(1, 1), padding='valid', *args, activation=None, "
                    "use_bias=True, kernel_initializer='glorot_uniform', name=None, **kwargs)"),
    (layers.MaxPool2D, "(pool_size=(2, 2), strides=None, padding='valid', *args, name=None, **kwargs)"),
    (layers.BatchNormalization, "(*args, momentum=0.99, epsilon=0.001, name=None, **kwargs)"),
    (layers.Dropout, "(rate, *args, name=None, **kwargs)"),
    (layers.Flatten, "(*args, name=None, **kwargs)"),
    (layers.Activation, "(activation, name=None, **kwargs)"),
    (optimizers.SGD, "(learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs)"),
    (optimizers.Adam, "(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, **kwargs)"),
    (optimizers.AdamW, "(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-07, "
                       "**kwargs)"),
    (optimizers.RMSprop, "(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-07, centered=False, **kwargs)"),
    (trainrr.losses.BinaryCrossentropy, "(from_logits=False, **kwargs)"),
    (trainrr.losses.SparseCategoricalCrossentropy, "(from_logits=False, **kwargs)"),
    (trainrr.losses.MeanSquaredError, "(**kwargs)"),
])
def test_help_shows_keras_defaults_and_says_what_each_argument_is(cls, signature):
    assert str(inspect.signature(cls)) == signature
    doc = inspect.getdoc(cls)
    assert doc and f"keras.{cls.__module__.rsplit('.', 1)[1]}.{cls.__name__}" in doc, doc
    for name in inspect.signature(cls).parameters:
        if name != "kwargs":
            assert f"{name}:" in doc or f"{name}," in doc, f"{cls.__name__}: {name} is not described"


def test_the_defaults_in_the_signatures_are_the_engines():
    from trainrr import _trainrr

    # The engine's description of a layer or an optimizer given by its type alone holds its defaults: made
    # from it, the object has no argument that differs from its signature's defaults.
    for kind, extra in (("Dense", "units = 1"), ("Conv2D", "filters = 1\nkernel_size = 3"), ("MaxPool2D", ""),
                        ("BatchNormalization", ""), ("Dropout", "rate = 0.5"), ("Activation", 'activation = "relu"')):
        text = (f'[data]\nsource = "synthetic"\nshape = [1]\nclasses = 2\nsamples = 2\n[[model.layers]]\n'
                f'type = "{kind}"\n{extra}\n[train]\nloss = "mse"\n')
        spec = _trainrr.parse_config(text, "t", "/")["layers"][0]
        spec.pop("activation" if kind != "Activation" and spec.get("activation") == "linear" else "", None)
        given = layers.Layer.from_spec(spec).get_config()
        assert set(given) <= {"units", "filters", "kernel_size", "rate", "activation"}, (kind, given)
    for kind in ("sgd", "adam", "adamw", "rmsprop"):
        text = (f'[data]\nsource = "synthetic"\nshape = [1]\nclasses = 2\nsamples = 2\n[[model.layers]]\n'
                f'type = "Dense"\nunits = 1\n[train]\nloss = "mse"\n[train.optimizer]\ntype = "{kind}"\n')
        spec = _trainrr.parse_config(text, "t", "/")["optimizer"]
        assert optimizers.Optimizer.from_spec(spec).get_config() == {}, (kind, spec)
    assert inspect.getdoc(trainrr.Sequential.summary).startswith("Prints the model")


def test_a_replay_on_other_samples_and_labels_names_both_files(tmp_path):
    x, y = blobs()
    classifier().fit(x, y, verbose=0, record=trainrr.record(tmp_path / "run.trr", seed=1))
    x2, y2 = x.copy(), y.copy()
    x2[5, 0] += 1
    y2[7] = 1 - y2[7]
    np.save(tmp_path / "x2.npy", x2)
    np.save(tmp_path / "y2.npy", y2.astype(np.float32))
    report = trainrr.replay(tmp_path / "run.trr", data=tmp_path / "x2.npy",
                            overrides={"data.labels": str(tmp_path / "y2.npy")}, allow_data_change=True)
    assert report.cause.category == "data", report.text()
    assert "x2.npy" in report.cause.detail and "y2.npy" in report.cause.detail, report.cause.detail
    # The labels named by overrides replace the trace's embedded copy, as data= does the samples.
    labels = str(tmp_path / "y2.npy")
    assert f'data: {labels} (overrides={{"data.labels": {json.dumps(labels)}}}) is used in place of the copy the ' \
           f'trace embeds' in report.notes, report.notes
    assert f"data: {tmp_path / 'x2.npy'} (data=) is used in place of the copy the trace embeds" in report.notes


def test_data_is_not_blamed_for_weights_drawn_before_any_row_is_read(tmp_path):
    # Another initializer, and a row of x that only the validation reads (the last 20%): the initializer.
    x, y = blobs()
    x2 = x.copy()
    x2[-1, 0] += 1

    def run(path, init, x):
        model = trainrr.Sequential([layers.Dense(8, activation="relu", kernel_initializer=init),
                                    layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", threads=1)
        model.fit(x, y, verbose=0, validation_split=0.2, record=trainrr.record(path, seed=1))

    run(tmp_path / "a.trr", "glorot_uniform", x)
    run(tmp_path / "b.trr", "he_uniform", x2)
    report = trainrr.diff(tmp_path / "a.trr", tmp_path / "b.trr")
    assert report.first_divergence.site == "init/dense_1.kernel"
    assert report.cause.category == "config", report.text()
    assert "the data differs too, but cannot have made this difference (the initial weights are drawn before " \
           "any row is read" in report.cause.detail, report.cause.detail


def test_a_numpy_float32_hyperparameter_is_the_number_it_shows(tmp_path):
    # np.float32(0.002) means 0.002, as Keras keeps it (a float32 again); widened to a double it would be
    # 0.0020000000949949026, another learning rate in the run's configuration and another run.
    x, y = blobs()

    def run(learning_rate, epsilon, split, path):
        model = trainrr.Sequential([layers.Dense(4, activation="relu"), layers.BatchNormalization(epsilon=epsilon),
                                    layers.Dense(2, activation="softmax")])
        model.compile(optimizer=optimizers.Adam(learning_rate=learning_rate), loss="sparse_categorical_crossentropy",
                      threads=1, policy="deterministic")
        model.fit(x, y, verbose=0, seed=1, validation_split=split, record=path)
        return model.to_config()

    python = run(0.002, 0.01, 0.2, tmp_path / "float.trr")
    numpy = run(np.float32(0.002), np.float32(0.01), np.float32(0.2), tmp_path / "float32.trr")
    assert numpy == python and "learning_rate = 0.002\n" in python and "validation_split = 0.2\n" in python
    assert trainrr.diff(tmp_path / "float.trr", tmp_path / "float32.trr").status == "identical"
    # An override too: the recorded learning rate, which changes nothing.
    replayed = trainrr.replay(tmp_path / "float.trr", overrides={"train.optimizer.learning_rate": np.float32(0.002)})
    assert replayed.status == "reproduced", replayed.text()
    # Keras' default, given as a float32 or a float16, is the default; a float64 is the double it holds.
    assert optimizers.Adam(learning_rate=np.float32(0.001)).get_config() == {}
    assert layers.BatchNormalization(epsilon=np.float32(1e-3)).get_config() == {}
    assert repr(optimizers.SGD(learning_rate=np.float16(0.1))) == "optimizers.SGD(learning_rate=0.1)"
    assert optimizers.Adam(learning_rate=np.float64(np.float32(0.001))).get_config() == {
        "learning_rate": 0.0010000000474974513}


def test_data_saved_in_float64_is_the_recorded_data_when_its_float32_values_are(tmp_path, bin_path):
    # fit converts a float64 x to float32; np.save of the x given to fit writes float64. The run reads the same
    # float32 values from it: a replay on it reproduces, and says how the files differ.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 6))
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    trace = tmp_path / "run.trr"
    classifier().fit(x, y, verbose=0, record=trainrr.record(trace, seed=1))
    np.save(tmp_path / "x64.npy", x)
    same = ("the arrays have other dtypes, float32 (recorded) vs float64 (now), and the same 720 values once "
            "converted to float32, as the run reads them")
    report = trainrr.replay(trace, data=tmp_path / "x64.npy")
    assert report.status == "reproduced" and report.cause is None, report.text()
    assert any(same in note for note in report.notes), report.notes
    run = cli("replay", trace, "--data", tmp_path / "x64.npy", check=False)
    assert run.returncode == 0 and run.stdout.startswith("reproduced bit for bit"), run.stdout + run.stderr
    assert same in run.stdout, run.stdout
    # A value that differs as float32 too is a difference, told with both dtypes.
    x[7, 2] += 0.5
    np.save(tmp_path / "x64.npy", x)
    with pytest.raises(trainrr.TraceError, match=r"the arrays have other dtypes, float32 \(recorded\) vs float64 "
                       r"\(now\); converted to float32, as the run reads them, first difference at row 7, element "
                       r"2 of the row"):
        trainrr.replay(trace, data=tmp_path / "x64.npy")


def test_a_diff_of_runs_that_read_the_same_values_from_files_of_other_dtypes_is_identical(tmp_path, bin_path):
    x, y = blobs()
    model = classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", policy="deterministic", threads=1)
    model.fit(x, y, verbose=0, record=trainrr.record(tmp_path / "py.trr", seed=3))
    model.to_config(tmp_path / "cli" / "run.toml")
    np.save(tmp_path / "cli" / "x.npy", x.astype(np.float64))
    cli("record", tmp_path / "cli" / "run.toml", "-o", tmp_path / "cli.trr", "--embed-data")
    report = trainrr.diff(tmp_path / "py.trr", tmp_path / "cli.trr")
    assert report.status == "identical", report.text()
    assert any("in its bytes, not in what the runs read: the arrays have other dtypes, float32 (A) vs float64 (B)"
               in note for note in report.notes), report.notes


def test_a_fits_arrays_are_named_as_the_arrays_given_to_fit_not_by_their_temporary_files(tmp_path):
    # fit saves its arrays for the run in a temporary folder, gone once the run is set up: the caller knows the
    # arrays, not those files.
    x, y = blobs()
    classifier().fit(x, y, verbose=0, record=trainrr.record(tmp_path / "a.trr", seed=1))
    x2 = x.copy()
    x2[5, 0] += 1
    classifier().fit(x2, y, verbose=0, record=trainrr.record(tmp_path / "b.trr", seed=1))
    report = trainrr.diff(tmp_path / "a.trr", tmp_path / "b.trr")
    assert report.cause is not None and report.cause.category == "data", report.text()
    assert report.cause.detail.startswith("data file 'x.npy' differs (the x given to fit, 5888 bytes vs the x given "
                                          "to fit, 5888 bytes); first difference at row 5"), report.cause.detail
    np.save(tmp_path / "x2.npy", x2)
    with pytest.raises(trainrr.TraceError) as e:
        trainrr.replay(tmp_path / "a.trr", data=tmp_path / "x2.npy")
    assert f"data file {tmp_path / 'x2.npy'} (recorded as the x given to fit) differs" in str(e.value), str(e.value)
    assert "trainrr-" not in str(e.value)


def test_a_trace_gives_an_infinite_loss_and_a_nan_loss_as_floats_apart(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 3)) * 100).astype(np.float32)
    model = trainrr.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e8), loss="mse", policy="deterministic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, x[:, 0] * 1e3, epochs=3, verbose=0, seed=1, record=str(tmp_path / "nan.trr"))
    trace = trainrr.open(tmp_path / "nan.trr")
    losses = trace.losses()
    steps = [s["loss"] for s in trace.steps()]
    assert np.isinf(losses[1]) and np.isnan(losses[2]), losses
    # Each step's loss is what losses() holds: a float, inf and nan apart, never None for both.
    assert all(type(v) is float for v in steps), steps
    np.testing.assert_array_equal(np.array(steps), losses)
    epochs = [e["logs"]["loss"] for e in trace.epochs()]
    assert all(type(v) is float for v in epochs), epochs
    np.testing.assert_array_equal(np.array(epochs), np.array(history.history["loss"]))


def test_keras_positional_arguments_are_taken_as_keras_takes_them(tmp_path):
    """A Keras call's arguments by position past those trainrr shares are Keras' (axis, bias_initializer,
    sample_weight, callbacks): refused by name, never read as another argument."""
    for make, words in [(lambda: layers.BatchNormalization(1), "argument 1 by position, 1, is Keras' axis"),
                        (lambda: layers.Dense(10, "relu", True, "glorot_uniform", "ones"),
                         "argument 5 by position, 'ones' (str), is Keras' bias_initializer"),
                        (lambda: layers.Conv2D(8, 3, 1, "same", "relu"),
                         "argument 5 by position, 'relu' (str), is Keras' data_format, which trainrr's engine does "
                         "not take (give activation, use_bias, kernel_initializer by name)"),
                        (lambda: layers.Dropout(0.5, (1, 4)), "is Keras' noise_shape")]:
        with pytest.raises(trainrr.ConfigError, match=re.escape(words)):
            make()
    # Keras' defaults by position ask for nothing, and Keras' next arguments are read as Keras reads them.
    assert layers.BatchNormalization(-1, 0.9).get_config() == {"momentum": 0.9}
    assert layers.Conv2D(8, 3, 1, "same", None, 1, 1, "relu").get_config()["activation"] == "relu"
    for made in (layers.Dense(10, "relu", True, "glorot_uniform", "zeros"), layers.Flatten("channels_last"),
                 layers.Dropout(0.5, None), layers.MaxPool2D(2, 2, "valid", None)):
        assert "data_format" not in made.get_config() and "bias_initializer" not in made.get_config()
    with pytest.raises(TypeError, match="multiple values for argument 'momentum'"):
        layers.BatchNormalization(-1, 0.9, momentum=0.8)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    # fit's sixth is callbacks, its seventh validation_split, as in Keras.
    history = m.fit(x, y, 8, 2, 0, None, 0.25, seed=1)
    assert "val_loss" in history.history
    with pytest.raises(trainrr.ConfigError, match="argument 5 by position, .* is Keras' sample_weight"):
        m.evaluate(x, y, 8, 0, np.ones(40))
    with pytest.raises(trainrr.ConfigError, match="argument 6 by position, 0.2, is Keras' callbacks, .*give "
                                                  "validation_split, shuffle by name"):
        m.fit(x, y, 8, 2, 0, 0.2)
    with pytest.raises(TypeError, match="multiple values for argument 'return_dict'"):
        m.evaluate(x, y, 8, 0, None, None, None, True, return_dict=False)
    with pytest.raises(trainrr.ConfigError, match="return_dict must be True or False"):
        m.evaluate(x, y, verbose=0, return_dict="no")
    assert isinstance(m.evaluate(x, y, 8, 0, None, None, None, True), dict)


def test_from_config_trains_the_text_it_read_and_keeps_its_runtime(tmp_path):
    """fit trains the configuration as from_config read it (a file edited since is not half-read), and the
    model keeps the configuration's device and TF32 setting, which to_config writes."""
    text = textwrap.dedent("""\
        seed = 1
        [data]
        source = "synthetic"
        shape = [4]
        classes = 2
        samples = 64
        [[model.layers]]
        type = "Dense"
        units = {units}
        activation = "relu"
        [[model.layers]]
        type = "Dense"
        units = 1
        activation = "sigmoid"
        [train]
        epochs = {epochs}
        loss = "binary_crossentropy"
        [runtime]
        threads = 1
        {runtime}
        """)
    path = tmp_path / "run.toml"
    path.write_text(text.format(units=16, epochs=1, runtime=""))
    model = trainrr.Sequential.from_config(path)
    path.write_text(text.format(units=4, epochs=3, runtime=""))
    history = model.fit(verbose=0)
    assert len(history.history["loss"]) == 1
    assert [w.shape for w in model.get_weights()][:2] == [(4, 16), (16,)]
    assert "units = 16" in model.to_config() and "epochs = 1" in model.to_config()
    path.write_text(text.format(units=4, epochs=1, runtime='device = "cuda"\ntf32 = true'))
    gpu = trainrr.Sequential.from_config(path)
    assert 'device = "cuda"' in gpu.to_config() and "tf32 = true" in gpu.to_config()


def test_a_report_names_the_arrays_a_fit_saved_not_their_folder_gone_since(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] > 0).astype(np.int64)
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", policy="deterministic", threads=1)
    trace = tmp_path / "a.trr"
    m.fit(x, y, epochs=1, verbose=0, record=trainrr.record(trace, seed=1))
    changed = x.copy()
    changed[5, 2] += 1.0
    np.save(tmp_path / "x2.npy", changed)
    report = trainrr.replay(trace, data=tmp_path / "x2.npy", allow_data_change=True)
    for text in (str(report), report.html()):
        assert "recorded as the x given to fit" in text
        assert not re.search(r"trainrr-\w{8}/x\.npy", text)


def test_keras_arguments_that_ask_for_nothing_are_taken_and_others_point_the_way():
    assert trainrr.optimizers.Adam(weight_decay=None).get_config() == {}
    with pytest.raises(trainrr.ConfigError, match=r"use optimizers\.AdamW\(weight_decay=\.\.\.\)"):
        trainrr.optimizers.Adam(weight_decay=0.01)
    m = trainrr.Sequential([layers.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=False)
    with pytest.raises(trainrr.ConfigError, match="a dict .* is not supported: the model has one output"):
        m.compile(optimizer="adam", loss="binary_crossentropy", metrics={"output": "accuracy"})


def test_from_config_trains_the_text_it_read_from_any_folder_and_from_a_pipe(tmp_path, monkeypatch):
    """The run from_config read is named by its path as it was then: a fit after a change of folder records a
    trace that replays; a configuration from a pipe, which cannot be read twice, is not read again by fit."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "elsewhere").mkdir()
    rows = "a,b,y\n" + "".join(f"{i % 5},{i % 3},{i % 2}\n" for i in range(40))
    (tmp_path / "proj" / "d.csv").write_text(rows)
    text = ('seed = 1\n[data]\npath = "d.csv"\nlabel = "y"\n[[model.layers]]\ntype = "Dense"\nunits = 1\n'
            'activation = "sigmoid"\n[train]\nepochs = 1\nbatch_size = 8\nloss = "binary_crossentropy"\n'
            '[runtime]\nthreads = 1\npolicy = "deterministic"\n')
    (tmp_path / "proj" / "run.toml").write_text(text)
    monkeypatch.chdir(tmp_path / "proj")
    model = trainrr.Sequential.from_config("run.toml")
    monkeypatch.chdir(tmp_path / "elsewhere")
    model.fit(verbose=0, record=tmp_path / "proj" / "run.trr")
    assert trainrr.replay(tmp_path / "proj" / "run.trr").reproduced
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    synthetic = ('seed = 1\n[data]\nsource = "synthetic"\nshape = [3]\nclasses = 2\nsamples = 16\n'
                 '[[model.layers]]\ntype = "Dense"\nunits = 1\nactivation = "sigmoid"\n'
                 '[train]\nloss = "binary_crossentropy"\n[runtime]\nthreads = 1\n')
    writer = threading.Thread(target=lambda: fifo.write_text(synthetic))
    writer.start()
    piped = trainrr.Sequential.from_config(fifo)
    writer.join()
    result = {}
    fitting = threading.Thread(target=lambda: result.setdefault("history", piped.fit(verbose=0)), daemon=True)
    fitting.start()
    fitting.join(60)
    assert "history" in result, "fit read the pipe again and waits for a writer"
