"""Callbacks with Keras semantics: History, EarlyStopping, ReduceLROnPlateau,
ModelCheckpoint, TerminateOnNaN, CSVLogger, LearningRateScheduler, LambdaCallback."""

import csv
import math
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Model, callbacks, optimizers




def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _model(device="numpy", seed=0, lr=0.01):
    m = Model([Dense(8, "relu", input_dim=4), Dense(3, "softmax")], seed=seed, device=device)
    m.compile(optimizers.SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


class Scripted(callbacks.Callback):
    """Overwrites logs[key] with scripted values (placed before the callback tested)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class WeightRecorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def _fit(model, cbs, epochs=10, **kw):
    X, y = _data()
    return model.fit(X, y, epochs=epochs, batch_size=20, verbose=0, callbacks=cbs, **kw)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


# ---- History / hooks ---------------------------------------------------------------------
def test_hooks_order_logs_and_params(device):
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda e, logs: events.append(f"begin{e}"),
        on_epoch_end=lambda e, logs: events.append((f"end{e}", sorted(logs))),
        on_train_end=lambda logs: events.append("train_end"))
    m = _model(device)
    h = _fit(m, [cb], epochs=2, validation_split=0.25)
    keys = ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert events == ["train_begin", "begin0", ("end0", keys), "begin1", ("end1", keys),
                      "train_end"]
    assert cb.model is m and cb.params["epochs"] == 2 and cb.params["steps"] == 3
    assert cb.params["do_validation"] is True
    assert isinstance(h, callbacks.History) and m.history is h and h.model is m


def test_user_history_instance_is_used():
    hist = callbacks.History()
    m = _model()
    assert _fit(m, [hist], epochs=2) is hist
    assert len(hist.history["loss"]) == 2 and hist.epoch == [0, 1]


def test_lambda_callback_rejects_batch_hooks():
    with pytest.raises(TypeError, match="per-batch"):
        callbacks.LambdaCallback(on_batch_end=lambda b, logs: None)
    with pytest.raises(TypeError, match="callable"):
        callbacks.LambdaCallback(on_epoch_end=3)


def test_stop_training_from_a_callback():
    m = _model()

    def stop(epoch, logs):
        if epoch == 2:
            m.stop_training = True
    h = _fit(m, [callbacks.LambdaCallback(on_epoch_end=stop)])
    assert h.epoch == [0, 1, 2]


# ---- EarlyStopping -----------------------------------------------------------------------
def test_early_stopping_patience(device):
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    h = _fit(_model(device), [Scripted("val_loss", [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.4]), es],
             epochs=7, validation_split=0.2)
    # best at epoch 1; epochs 2 and 3 do not improve -> stop at epoch 3
    assert h.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best == 0.9
    assert es.best_epoch == 1


def test_early_stopping_min_delta():
    es = callbacks.EarlyStopping(monitor="loss", min_delta=0.05, patience=1)
    h = _fit(_model(), [Scripted("loss", [1.0, 0.99, 0.98, 0.97, 0.9]), es], epochs=5)
    assert h.epoch == [0, 1]          # 0.99 is not 0.05 better than 1.0
    es2 = callbacks.EarlyStopping(monitor="loss", min_delta=0.005, patience=1)
    h2 = _fit(_model(), [Scripted("loss", [1.0, 0.99, 0.98, 0.97, 0.9]), es2], epochs=5)
    assert h2.epoch == [0, 1, 2, 3, 4]


def test_early_stopping_restore_best_weights(device):
    rec = WeightRecorder()
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    m = _model(device)
    h = _fit(m, [Scripted("val_loss", [1.0, 0.5, 0.7, 0.8, 0.9]), rec, es], epochs=5,
             validation_split=0.2)
    assert h.epoch == [0, 1, 2, 3]
    assert _same(m.get_weights(), rec.weights[1])
    assert not _same(m.get_weights(), rec.weights[3])
    # Keras 3: best weights are restored at the end even without an early stop
    m2 = _model(device)
    rec2 = WeightRecorder()
    es2 = callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    _fit(m2, [Scripted("val_loss", [1.0, 0.4, 0.7]), rec2, es2], epochs=3,
         validation_split=0.2)
    assert es2.stopped_epoch == 0 and _same(m2.get_weights(), rec2.weights[1])


def test_early_stopping_mode_baseline_and_start_epoch():
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=1)
    assert es.mode == "max"
    h = _fit(_model(), [Scripted("val_accuracy", [0.5, 0.6, 0.55, 0.9]), es], epochs=4,
             validation_split=0.2)
    assert h.epoch == [0, 1, 2]
    # the first epoch counts towards patience unless it beats the baseline (Keras 3)
    es = callbacks.EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    h = _fit(_model(), [Scripted("loss", [0.9, 0.95, 0.97, 0.99]), es], epochs=4)
    assert h.epoch == [0, 1]
    es = callbacks.EarlyStopping(monitor="loss", patience=2)
    h = _fit(_model(), [Scripted("loss", [0.9, 0.95, 0.97, 0.99]), es], epochs=4)
    assert h.epoch == [0, 1, 2]
    es = callbacks.EarlyStopping(monitor="loss", patience=0, start_from_epoch=3)
    h = _fit(_model(), [Scripted("loss", [1, 2, 3, 4, 5, 6]), es], epochs=6)
    assert h.epoch == [0, 1, 2, 3, 4]   # monitoring starts at epoch 3
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        callbacks.EarlyStopping(patience=-1)


def test_early_stopping_missing_monitor_warns():
    es = callbacks.EarlyStopping(monitor="val_loss")
    with pytest.warns(RuntimeWarning, match="val_loss"):
        h = _fit(_model(), [es], epochs=2)
    assert h.epoch == [0, 1]


def test_early_stopping_on_real_validation_accuracy(device, capsys):
    X, y = _data(200)
    m = _model(device, lr=0.2)
    es = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=1e-4, patience=3,
                                 restore_best_weights=True, verbose=1)
    h = m.fit(X, y, epochs=200, batch_size=10, validation_split=0.2, verbose=0, callbacks=[es])
    assert len(h.epoch) < 200
    best = max(h.history["val_accuracy"])
    assert m.evaluate(X[160:], y[160:])["accuracy"] == pytest.approx(best)
    assert "early stopping" in capsys.readouterr().out


# ---- ReduceLROnPlateau ---------------------------------------------------------------------
def test_reduce_lr_on_plateau_changes_lr(device, capsys):
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_lr=0.003,
                                     verbose=1)
    m = _model(device, lr=0.02)
    h = _fit(m, [Scripted("loss", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), rl],
             epochs=9)
    # epochs 1, 2 no improvement -> reduce after epoch 2; again after 4, 6 (min_lr caps)
    assert h.history["lr"] == pytest.approx([0.02, 0.02, 0.02, 0.01, 0.01, 0.005, 0.005,
                                             0.003, 0.003])
    assert m.optimizer.learning_rate == pytest.approx(0.003)
    assert m.network.optimizer.learning_rate == pytest.approx(0.003)
    assert "reducing learning rate to 0.01" in capsys.readouterr().out


def test_reduce_lr_cooldown_and_improvement():
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, cooldown=2,
                                     min_delta=0.0)
    m = _model(lr=0.1)
    h = _fit(m, [Scripted("loss", [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]), rl], epochs=7)
    # reduce after epoch 2; cooldown of 2 epochs: epoch 3 is skipped, epoch 4 counts
    # again (Keras decrements the cooldown before testing it) -> reduce after epoch 4
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_with_a_schedule_is_refused():
    m = Model([Dense(3, "softmax", input_dim=4)], device="numpy")
    m.compile(optimizers.SGD(optimizers.ExponentialDecay(0.1, 10, 0.9)),
              "sparse_categorical_crossentropy")
    rl = callbacks.ReduceLROnPlateau(monitor="loss", patience=0)
    with pytest.raises(TypeError, match="schedule"):
        _fit(m, [Scripted("loss", [1.0, 1.0, 1.0]), rl], epochs=3)


# ---- ModelCheckpoint ------------------------------------------------------------------------
def test_model_checkpoint_every_epoch(tmp_path, device):
    rec = WeightRecorder()
    path = str(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.npz")
    m = _model(device)
    h = _fit(m, [rec, callbacks.ModelCheckpoint(path, monitor="loss")], epochs=3)
    files = sorted(os.listdir(tmp_path))
    assert files == [f"ckpt-{e + 1:02d}-{h.history['loss'][e]:.3f}.npz" for e in range(3)]
    second = fastmlp.load_model(tmp_path / files[1], device=device)
    assert _same(second.get_weights(), rec.weights[1])
    assert second.optimizer.iterations == 2 * 3


def test_model_checkpoint_save_best_only(tmp_path, capsys):
    rec = WeightRecorder()
    path = tmp_path / "best.npz"
    ck = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True, verbose=1)
    m = _model()
    mtimes = []

    def note(epoch, logs):
        mtimes.append(os.stat(path).st_mtime_ns if path.exists() else None)
    _fit(m, [Scripted("val_loss", [1.0, 0.5, 0.8, 0.4, 0.6]), rec, ck,
             callbacks.LambdaCallback(on_epoch_end=note)], epochs=5, validation_split=0.2)
    best = fastmlp.load_model(path)
    assert _same(best.get_weights(), rec.weights[3])
    saved = [i for i in range(5) if mtimes[i] != (mtimes[i - 1] if i else None)]
    assert saved == [0, 1, 3]
    out = capsys.readouterr().out
    assert "val_loss improved from 0.50000 to 0.40000" in out and "did not improve" in out
    assert "val_loss improved from inf to 1.00000" in out
    assert [f for f in os.listdir(tmp_path)] == ["best.npz"]      # no temporary files left
    ck = callbacks.ModelCheckpoint(path, monitor="accuracy", save_best_only=True, verbose=1)
    _fit(_model(), [ck], epochs=1)
    assert "accuracy improved from -inf to" in capsys.readouterr().out   # as Keras


def test_model_checkpoint_weights_only(tmp_path):
    path = tmp_path / "w.npz"
    m = _model()
    _fit(m, [callbacks.ModelCheckpoint(path, monitor="loss", save_weights_only=True)],
         epochs=2)
    with pytest.raises(ValueError, match="only weights"):
        fastmlp.load_model(path)
    fresh = _model(seed=9)
    fresh.load_weights(path)
    assert _same(fresh.get_weights(), m.get_weights())
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.ModelCheckpoint(path, save_freq=10)
    bad = callbacks.ModelCheckpoint(str(tmp_path / "{nope}.npz"))
    with pytest.raises(ValueError, match="could not be formatted"):
        _fit(_model(), [bad], epochs=1)


# ---- TerminateOnNaN ----------------------------------------------------------------------------
def test_terminate_on_nan(capsys):
    h = _fit(_model(), [Scripted("loss", [0.5, float("nan"), 0.3, 0.2]),
                        callbacks.TerminateOnNaN()], epochs=4)
    assert h.epoch == [0, 1]
    assert "invalid loss" in capsys.readouterr().out


def test_real_divergence_with_terminate_on_nan():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)) * 100
    Y = rng.normal(size=(40, 1)) * 1e4
    m = Model([Dense(4, "relu", input_dim=4), Dense(1)], device="numpy", seed=0)
    m.compile(optimizers.SGD(10.0), "mse")
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        h = m.fit(X, Y, epochs=10, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert math.isnan(h.history["loss"][-1]) and len(h.epoch) < 10


# ---- CSVLogger --------------------------------------------------------------------------------
def test_csv_logger_content(tmp_path, device):
    path = tmp_path / "log.csv"
    m = _model(device)
    h = _fit(m, [callbacks.CSVLogger(path)], epochs=3, validation_split=0.2)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert len(rows) == 4
    for e, row in enumerate(rows[1:]):
        assert int(row[0]) == e
        for key, value in zip(rows[0][1:], row[1:]):
            assert float(value) == h.history[key][e]      # repr round-trips exactly
    # append: no second header
    _fit(m, [callbacks.CSVLogger(path, append=True)], epochs=2, validation_split=0.2)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 6 and rows.count(rows[0]) == 1
    # overwrite, other separator
    _fit(m, [callbacks.CSVLogger(path, separator=";")], epochs=1)
    assert open(path).read().splitlines()[0] == "epoch;accuracy;loss;lr"


# ---- LearningRateScheduler -----------------------------------------------------------------------
def test_learning_rate_scheduler(device, capsys):
    m = _model(device, lr=0.1)
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch >= 2 else lr,
                                            verbose=1)
    h = _fit(m, [sched], epochs=4)
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert "setting learning rate to 0.05" in capsys.readouterr().out
    m2 = _model(device)
    h2 = _fit(m2, [callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], epochs=3)
    assert h2.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    with pytest.raises(ValueError, match="finite number"):
        _fit(_model(), [callbacks.LearningRateScheduler(lambda epoch: -1.0)], epochs=1)
    with pytest.raises(TypeError, match="callable"):
        callbacks.LearningRateScheduler(0.1)


def test_learning_rate_scheduler_changes_training():
    X, y = _data()
    a, b = _model(seed=1, lr=0.1), _model(seed=1, lr=0.1)
    a.fit(X, y, epochs=2, verbose=0)
    b.fit(X, y, epochs=2, verbose=0,
          callbacks=[callbacks.LearningRateScheduler(lambda e: 0.1 if e == 0 else 0.01)])
    assert not _same(a.get_weights(), b.get_weights())
    c = _model(seed=1, lr=0.1)
    c.fit(X, y, epochs=1, verbose=0)
    c.optimizer.learning_rate = 0.01
    c.fit(X, y, epochs=2, initial_epoch=1, verbose=0)
    assert _same(b.get_weights(), c.get_weights())


def test_model_checkpoint_creates_missing_folders(tmp_path):
    m = _model()
    path = tmp_path / "runs" / "a" / "ckpt-{epoch:02d}.npz"
    _fit(m, [callbacks.ModelCheckpoint(str(path), monitor="loss")], epochs=2)
    assert sorted(os.listdir(tmp_path / "runs" / "a")) == ["ckpt-01.npz", "ckpt-02.npz"]


def test_callback_arguments_are_checked_by_name():
    bad = [(lambda: callbacks.ReduceLROnPlateau(factor="a"), TypeError, r"ReduceLROnPlateau\(factor='a'\)"),
           (lambda: callbacks.ReduceLROnPlateau(factor=1.0), ValueError, r"must be in \(0, 1\)"),
           (lambda: callbacks.ReduceLROnPlateau(patience=-1), ValueError, r"patience=-1\)"),
           (lambda: callbacks.ReduceLROnPlateau(cooldown=1.5), TypeError, "cooldown=1.5"),
           (lambda: callbacks.EarlyStopping(start_from_epoch="a"), TypeError, "start_from_epoch"),
           (lambda: callbacks.EarlyStopping(min_delta=-1), ValueError, r"min_delta=-1\)"),
           (lambda: callbacks.EarlyStopping(baseline="x"), TypeError, "baseline"),
           (lambda: callbacks.CSVLogger("log.csv", separator=";;"), ValueError, "one character"),
           (lambda: callbacks.CSVLogger(None), TypeError, r"CSVLogger\(filename=None\)"),
           (lambda: callbacks.ModelCheckpoint(b"m.npz"), TypeError,
            r"ModelCheckpoint\(filepath=b'm.npz'\): expected a file path"),
           (lambda: callbacks.ModelCheckpoint(None), TypeError, "filepath=None"),
           (lambda: callbacks.ModelCheckpoint("m.npz", initial_value_threshold="abc"),
            TypeError, "initial_value_threshold='abc'"),
           (lambda: callbacks.ModelCheckpoint("m.npz", initial_value_threshold=float("nan")),
            ValueError, "initial_value_threshold=nan")]
    for make, exc, match in bad:
        with pytest.raises(exc, match=match):
            make()
    assert callbacks.EarlyStopping(patience=3.0).patience == 3      # integral floats pass


# ---- the model changed by a callback during fit ----------------------------------------
class _AtEpochEnd(callbacks.Callback):
    def __init__(self, epoch, change):
        super().__init__()
        self.epoch, self.change = epoch, change

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.change(self.model)


def test_threads_or_device_changed_between_epochs_keep_training():
    """n_threads or device set in on_epoch_end: the next epochs train the new engine
    (fit had kept training the engine it started with, and the model's weights stopped
    at the change); the result is the run without the change."""
    X, y = _data()
    ref = _model(device="cpu")
    ref.fit(X, y, epochs=4, batch_size=20, verbose=0)
    for change in (lambda m: setattr(m, "n_threads", 2),
                   lambda m: setattr(m, "device", "numpy")):
        m, rec = _model(device="cpu"), WeightRecorder()
        m.n_threads = 1
        m.fit(X, y, epochs=4, batch_size=20, verbose=0, callbacks=[_AtEpochEnd(0, change),
                                                                     rec])
        assert not _same(rec.weights[1], rec.weights[3])
        for a, b in zip(m.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_threads_changed_inside_an_epoch_or_compile_during_fit_raise():
    class InEpoch(callbacks.Callback):
        def on_epoch_progress(self, epoch, steps_done, logs=None):
            self.model.n_threads = 2

    X, y = _data()
    m = _model(device="cpu")
    with pytest.raises(RuntimeError, match="middle of an epoch"):
        m.fit(X, y, epochs=2, batch_size=20, verbose=1, callbacks=[InEpoch()])
    with pytest.raises(RuntimeError, match=r"compile\(\) was called during fit"):
        m.fit(X, y, epochs=2, batch_size=20, verbose=0,
              callbacks=[_AtEpochEnd(0, lambda m: m.compile("adam", "mse"))])
    m.n_threads = 2          # after a fit that raised, the model can change and train again
    m.fit(X, y, epochs=1, batch_size=20, verbose=0)
    m.compile("adam", "sparse_categorical_crossentropy")


def test_ctrl_c_inside_an_epoch_leaves_the_model_free_to_move():
    """A KeyboardInterrupt inside an epoch (a second Ctrl-C, or raised by a callback) ends
    the epoch; on_train_end may then change n_threads, and fit ends with its warning."""
    class Stop(callbacks.Callback):
        def on_epoch_progress(self, epoch, steps_done, logs=None):
            raise KeyboardInterrupt

        def on_train_end(self, logs=None):
            self.model.n_threads = 1

    X, y = _data()
    m = _model(device="cpu")
    with pytest.warns(fastmlp.TrainingInterruptedWarning, match="interrupted"):
        m.fit(X, y, epochs=2, batch_size=20, verbose=1, callbacks=[Stop()])
    assert m.n_threads == 1
    m.fit(X, y, epochs=1, batch_size=20, verbose=0)
