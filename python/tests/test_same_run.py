"""A Python run and a CLI run of one configuration are the same run: the same trace, message for message
(apart from where the files were), and each replays bit for bit from the other side."""

import os

import numpy as np

import trainrr
from trainrr import layers, optimizers

from conftest import EXAMPLES, breast_cancer, cli, dump, without_places


# The example's default policy lets its loader's two threads race (the batch order is recorded and forced on
# replay): two recordings are equal only when the run is deterministic, so the comparisons of two recordings
# take the deterministic policy.
DETERMINISTIC = "runtime.policy=deterministic"


def breast_cancer_model(policy="deterministic"):
    model = trainrr.Sequential([layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.001), loss="binary_crossentropy", metrics=["accuracy"],
                  threads=2, policy=policy)
    return model


def split_and_scale(x, y, seed=42):
    """The example's preparation in numpy: a seeded 0.2 test split, standardized on the training rows."""
    order = np.random.RandomState(seed).permutation(len(x))
    test = int(np.ceil(0.2 * len(x)))
    train_rows, test_rows = order[test:], order[:test]
    mean, std = x[train_rows].mean(axis=0), x[train_rows].std(axis=0)
    return (x[train_rows] - mean) / std, y[train_rows], (x[test_rows] - mean) / std, y[test_rows]


def test_python_breast_cancer_records_the_cli_trace_of_its_configuration(tmp_path, bin_path):
    x_train, y_train, x_test, y_test = split_and_scale(*breast_cancer())
    model = breast_cancer_model()
    history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0, seed=42,
                        record=trainrr.record(tmp_path / "python.trr", level="layer"))
    assert len(history.history["loss"]) == 10

    folder = tmp_path / "cli"
    folder.mkdir()
    model.to_config(folder / "model.toml")
    assert sorted(os.listdir(folder)) == ["model.toml", "x.npy", "y.npy"]
    cli("record", folder / "model.toml", "-o", tmp_path / "cli.trr", "--level", "layer", "--embed-data")

    python_messages, cli_messages = dump(tmp_path / "python.trr"), dump(tmp_path / "cli.trr")
    assert len(python_messages) == len(cli_messages) > 10 * 15
    assert without_places(python_messages) == without_places(cli_messages)
    # The model trained, so the comparison is not one of two empty runs.
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9


def test_from_config_records_the_same_trace_as_trainrr_record(tmp_path, bin_path):
    config = os.path.join(EXAMPLES, "breast_cancer.toml")
    model = trainrr.Sequential.from_config(config, overrides=[DETERMINISTIC])
    model.fit(verbose=0, record=trainrr.record(tmp_path / "python.trr", level="op", checkpoint_every=7))
    cli("record", config, "-o", tmp_path / "cli.trr", "--level", "op", "--checkpoint-every", "7", "--set", DETERMINISTIC)
    python_messages, cli_messages = dump(tmp_path / "python.trr"), dump(tmp_path / "cli.trr")
    assert python_messages[0]["config_path"] == cli_messages[0]["config_path"] == config
    assert without_places(python_messages) == without_places(cli_messages)
    assert [m["step"] for m in python_messages if m["type"] == "checkpoint"] == [0, 7, 14, 21, 28, 35, 42, 49, 56,
                                                                                 63, 70, 77, 84, 91, 98, 105, 112,
                                                                                 119, 126, 133, 140, 147, 150]


def test_fit_arguments_on_a_configuration_are_its_set_overrides(tmp_path, bin_path):
    config = os.path.join(EXAMPLES, "breast_cancer.toml")
    trainrr.Sequential.from_config(config, overrides=[DETERMINISTIC]).fit(epochs=2, batch_size=64, verbose=0,
                                                                           record=tmp_path / "python.trr")
    cli("record", config, "-o", tmp_path / "cli.trr", "--set", DETERMINISTIC, "--set", "train.epochs=2", "--set",
        "train.batch_size=64")
    python_messages = dump(tmp_path / "python.trr")
    assert python_messages[0]["config_overrides"] == [DETERMINISTIC, "train.epochs=2", "train.batch_size=64"]
    assert without_places(python_messages) == without_places(dump(tmp_path / "cli.trr"))


def test_a_python_recording_replays_bit_for_bit_from_the_cli_and_a_cli_recording_from_python(tmp_path, bin_path):
    x, y = breast_cancer()
    model = breast_cancer_model(policy="default")  # racy: the replay forces the recorded batch order
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25, record=trainrr.record(tmp_path / "python.trr",
                                                                                      level="op", seed=7))
    # From the trace alone: the arrays are embedded, no file of them is left anywhere.
    p = cli("replay", tmp_path / "python.trr", cwd=tmp_path)
    assert p.stdout.startswith("reproduced bit for bit"), p.stdout

    cli("record", os.path.join(EXAMPLES, "digits_bn.toml"), "-o", tmp_path / "cli.trr", "--level", "layer",
        "--set", "train.epochs=1")
    report = trainrr.replay(tmp_path / "cli.trr")
    assert report.status == "reproduced", report.text()
    assert report.exit_code == 0 and report.first_divergence is None and report.cause is None
    assert str(report).startswith("reproduced bit for bit")


def test_a_replay_that_differs_names_the_step_site_and_cause(tmp_path):
    # An unseeded run draws its seed from the OS: a replay that forces nothing draws another one.
    x, y = breast_cancer()
    model = breast_cancer_model()
    model.fit(x, y, epochs=1, verbose=0, record=tmp_path / "unseeded.trr")
    report = trainrr.replay(tmp_path / "unseeded.trr", force="none")
    assert report.status == "diverged", report.text()
    assert report.exit_code == 1
    assert report.first_divergence.step == 0 and report.first_divergence.site
    assert report.cause.category == "rng", report.text()
    assert trainrr.replay(tmp_path / "unseeded.trr").status == "reproduced"


def test_to_config_of_an_unseeded_fit_holds_the_seed_it_drew(tmp_path, bin_path):
    x, y = breast_cancer()
    model = breast_cancer_model()
    before = model.to_config()
    rec = trainrr.record(tmp_path / "python.trr")
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.1, record=rec)
    model.to_config(tmp_path / "cli" / "run.toml")
    assert "seed" not in before  # before any fit, the run is unseeded
    seed = trainrr.open(tmp_path / "python.trr").seed
    assert rec.seed == seed and f"seed = {seed}\n" in (tmp_path / "cli" / "run.toml").read_text()
    cli("record", tmp_path / "cli" / "run.toml", "-o", tmp_path / "cli.trr", "--embed-data")
    assert trainrr.diff(tmp_path / "python.trr", tmp_path / "cli.trr").status == "identical"
    # Message for message, but for what the header says of the seed: drawn from the OS by the Python run, read
    # from its configuration (its `seed =` line) by the CLI's.
    python_messages, cli_messages = without_places(dump(tmp_path / "python.trr")), without_places(dump(tmp_path / "cli.trr"))
    assert python_messages[0]["seed_from_entropy"] and not cli_messages[0]["seed_from_entropy"]
    assert cli_messages[0]["config"] == f"seed = {seed}\n\n" + python_messages[0]["config"]
    for m in (python_messages[0], cli_messages[0]):
        del m["seed_from_entropy"], m["config"]
    assert python_messages == cli_messages
