"""Model.save / fastmlp.load_model: one .npz, exact round trips, no pickle, clear
errors for damaged or foreign files, atomic writes; save_weights / load_weights."""

import json
import os
import stat
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Model, callbacks, optimizers, regularizers
from fastmlp import model as model_module


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return X, y


def _trained(device, opt=None, dtype="float32", epochs=2):
    m = Model([Dense(7, "relu", input_dim=5, kernel_regularizer=regularizers.l2(1e-3),
                     dropout=0.1, kernel_initializer="he_normal"),
               Dense(4, "tanh", use_bias=False, name="middle"),
               Dense(3, "softmax")], seed=5, device=device, dtype=dtype, name="net")
    m.compile(opt or optimizers.Adam(0.01), "sparse_categorical_crossentropy",
              metrics=["accuracy", "mae"])
    X, y = _data()
    m.fit(X, y, epochs=epochs, batch_size=16, verbose=0)
    return m


def _same(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("make_opt", [lambda: optimizers.Adam(0.01),
                                      lambda: optimizers.SGD(0.1, momentum=0.9),
                                      optimizers.RMSprop, lambda: optimizers.Adagrad(0.05)],
                         ids=["Adam", "SGD", "RMSprop", "Adagrad"])
def test_round_trip_is_exact(tmp_path, device, make_opt):
    opt = make_opt()     # one instance per model: an optimizer drives one model
    m = _trained(device, opt)
    path = m.save(tmp_path / "model.npz")
    assert path == str(tmp_path / "model.npz")
    m2 = fastmlp.load_model(path)
    assert _same(m.get_weights(), m2.get_weights())
    assert m2.get_config() == m.get_config()
    assert m2.loss == m.loss and m2.metrics == m.metrics
    assert type(m2.optimizer) is type(opt)
    assert m2.optimizer.get_config() == m.optimizer.get_config()
    s1, s2 = m.network.get_optimizer_state(), m2.network.get_optimizer_state()
    assert s1["step"] == s2["step"] > 0
    assert _same(s1["slots"], s2["slots"])
    assert [l.name for l in m2.layers] == ["dense", "middle", "dense_1"]
    assert m2.layers[0].dropout == 0.1 and m2.layers[0].kernel_regularizer.l2 == 1e-3
    X, y = _data()
    np.testing.assert_array_equal(m.predict(X), m2.predict(X))
    assert m.evaluate(X, y) == m2.evaluate(X, y)


def test_training_continues_identically_after_loading(tmp_path, device):
    m = _trained(device)
    m2 = fastmlp.load_model(m.save(tmp_path / "m.npz"))
    X, y = _data()
    h1 = m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    h2 = m2.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history
    assert _same(m.get_weights(), m2.get_weights())


def test_round_trip_float64_and_device_override(tmp_path):
    m = _trained("numpy", dtype="float64")
    path = m.save(tmp_path / "m64")                # ".npz" is appended
    assert path.endswith("m64.npz") and os.path.exists(path)
    m2 = fastmlp.load_model(tmp_path / "m64", device="numpy", n_threads=1)
    assert m2.dtype == "float64" and m2.device == "numpy" and m2.n_threads == 1
    assert _same(m.get_weights(), m2.get_weights())


def test_file_is_plain_npz_without_pickle(tmp_path):
    m = _trained("numpy")
    path = m.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
        config = json.loads(data["fastmlp_config"].tobytes())
        assert all(data[k].dtype != object for k in names)
    assert {"params", "optimizer_slot_0", "optimizer_slot_1", "fastmlp_config",
            "fastmlp_sha256"} == names
    assert config["format"] == "fastmlp.model" and config["compile"]["loss"] == \
        "sparse_categorical_crossentropy"
    assert config["built"]["layer_sizes"] == [5, 7, 4, 3]
    assert zipfile.is_zipfile(path)


def test_unbuilt_and_uncompiled_models(tmp_path):
    m = Model([Dense(4, "relu"), Dense(1)], seed=3, device="numpy")
    m2 = fastmlp.load_model(m.save(tmp_path / "a.npz"))
    assert not m2.built and not m2.compiled and m2.seed == 3
    assert [l.units for l in m2.layers] == [4, 1]
    m = Model([Dense(4, "relu", input_dim=2), Dense(1)], seed=3, device="numpy")
    m.build()
    m2 = fastmlp.load_model(m.save(tmp_path / "b.npz"))
    assert m2.built and not m2.compiled and _same(m.get_weights(), m2.get_weights())
    m.compile("sgd", "mse")
    m3 = fastmlp.load_model(m.save(tmp_path / "c.npz"), compile=False)
    assert m3.built and not m3.compiled


def test_schedules_and_changed_learning_rates_persist(tmp_path):
    X, y = _data()
    sched = optimizers.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5, staircase=True)
    m = _trained("numpy", optimizers.SGD(sched, momentum=0.5))
    m2 = fastmlp.load_model(m.save(tmp_path / "s.npz"))
    assert isinstance(m2.optimizer.schedule, optimizers.ExponentialDecay)
    assert m2.optimizer.schedule.get_config() == sched.get_config()
    assert m2.optimizer.learning_rate == m.optimizer.learning_rate
    # a learning rate lowered by ReduceLROnPlateau is saved
    r = _trained("numpy", optimizers.SGD(0.1))
    r.fit(X, y, epochs=3, verbose=0, callbacks=[
        callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=10.0, factor=0.5)])
    assert r.optimizer.learning_rate == pytest.approx(0.025)
    r2 = fastmlp.load_model(r.save(tmp_path / "r.npz"))
    assert r2.optimizer.learning_rate == pytest.approx(0.025)
    # a function as learning rate cannot be saved: the current rate is kept, with a warning
    f = _trained("numpy", optimizers.SGD(lambda epoch: 0.2 / (epoch + 1)))
    with pytest.warns(UserWarning, match="cannot be saved"):
        path = f.save(tmp_path / "f.npz")
    f2 = fastmlp.load_model(path)
    assert f2.optimizer.learning_rate == pytest.approx(0.1)
    step = optimizers.PiecewiseConstantDecay([3], [0.1, 0.01])
    p2 = fastmlp.load_model(_trained("numpy", optimizers.SGD(step)).save(tmp_path / "p.npz"))
    assert p2.optimizer.schedule.get_config() == {"boundaries": [3], "values": [0.1, 0.01]}


# ---- damaged and foreign files -------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    return _trained("numpy").save(tmp_path / "good.npz")


def test_truncated_file(saved, tmp_path):
    data = open(saved, "rb").read()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated or corrupted|not a fastmlp model"):
            fastmlp.load_model(bad)


def test_empty_and_random_files(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="fastmlp model file"):
        fastmlp.load_model(empty)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="fastmlp model file"):
        fastmlp.load_model(junk)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        fastmlp.load_model(tmp_path / "missing.npz")


def test_foreign_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.load_model(other)
    npy = tmp_path / "arr.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.load_model(npy)
    pickled = tmp_path / "obj.npz"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.load_model(str(pickled) + ".npy")


def _rewrite(path, out, change):
    """Copy the npz at ``path`` to ``out`` with ``change(dict_of_arrays)`` applied."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(out, **arrays)


def test_tampered_weights_or_config(saved, tmp_path):
    def bump_weights(a):
        a["params"] = a["params"].copy()
        a["params"][0] += 1.0

    def edit_config(a):
        cfg = json.loads(a["fastmlp_config"].tobytes())
        cfg["model"]["layers"][0]["config"]["activation"] = "tanh"
        a["fastmlp_config"] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)

    def drop_slot(a):
        del a["optimizer_slot_1"]

    for change in (bump_weights, edit_config, drop_slot):
        out = tmp_path / f"{change.__name__}.npz"
        _rewrite(saved, out, change)
        with pytest.raises(ValueError, match="integrity check"):
            fastmlp.load_model(out)


def test_flipped_bytes_are_detected(saved, tmp_path):
    data = bytearray(open(saved, "rb").read())
    for pos in (len(data) // 3, len(data) // 2):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        out = tmp_path / f"flip{pos}.npz"
        out.write_bytes(bytes(bad))
        with pytest.raises(ValueError):
            fastmlp.load_model(out)


def test_inconsistent_but_signed_file_gives_clear_error(saved, tmp_path):
    """A file whose digest was recomputed after an inconsistent edit still fails
    cleanly (ValueError, never a crash)."""
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    cfg = json.loads(arrays.pop("fastmlp_config").tobytes())
    arrays.pop("fastmlp_sha256")
    cfg["built"]["layer_sizes"] = [5, 9, 4, 3]
    del cfg["training"]
    config_bytes = json.dumps(cfg, sort_keys=True).encode()
    digest = model_module._digest(config_bytes, arrays)
    arrays["fastmlp_config"] = np.frombuffer(config_bytes, dtype=np.uint8)
    arrays["fastmlp_sha256"] = np.frombuffer(digest.encode(), dtype=np.uint8)
    out = tmp_path / "inconsistent.npz"
    np.savez(out, **arrays)
    with pytest.raises(ValueError, match="inconsistent"):
        fastmlp.load_model(out)


def _resigned(saved, out, edit):
    """A copy of `saved` edited by edit(config, arrays), its digest recomputed."""
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    cfg = json.loads(arrays.pop("fastmlp_config").tobytes())
    arrays.pop("fastmlp_sha256")
    edit(cfg, arrays)
    config_bytes = json.dumps(cfg, sort_keys=True).encode()
    digest = model_module._digest(config_bytes, arrays)
    arrays["fastmlp_config"] = np.frombuffer(config_bytes, dtype=np.uint8)
    arrays["fastmlp_sha256"] = np.frombuffer(digest.encode(), dtype=np.uint8)
    np.savez(out, **arrays)
    return out


def test_edited_signed_files_with_bad_contents_give_clear_errors(saved, tmp_path):
    """Edits with a recomputed digest: a model config of the wrong type, and weights
    holding NaN (load_model and load_weights alike), are ValueErrors naming the file."""
    def wrong_type(cfg, arrays):
        cfg["model"] = []

    def nan_weight(cfg, arrays):
        arrays["params"] = arrays["params"].copy()
        arrays["params"][3] = np.nan

    with pytest.raises(ValueError, match="inconsistent"):
        fastmlp.load_model(_resigned(saved, tmp_path / "a.npz", wrong_type))
    path = _resigned(saved, tmp_path / "b.npz", nan_weight)
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastmlp.load_model(path)
    model = fastmlp.load_model(saved)
    before = model.get_weights()
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.load_weights(path)
    assert _same(model.get_weights(), before)


def test_load_weights_beyond_float32_range_is_refused_before_building(tmp_path):
    big = Model([Dense(3, "softmax", input_dim=5)], dtype="float64")
    big.compile("adam", "sparse_categorical_crossentropy")
    big.build(5)
    w = big.get_weights()
    w[0][0, 0] = 1e39
    big.set_weights(w)
    big.save_weights(tmp_path / "w.npz")
    small = Model([Dense(3, "softmax", input_dim=5)])           # float32, not built
    with pytest.raises(ValueError, match="beyond float32's range"):
        small.load_weights(tmp_path / "w.npz")
    assert not small.built
    small.build(5)
    before = small.get_weights()
    with pytest.raises(ValueError, match="beyond float32's range"):
        small.load_weights(tmp_path / "w.npz")
    assert _same(small.get_weights(), before)


def test_numpy_integer_n_threads_is_saved_as_an_int(tmp_path):
    m = Model([Dense(3, "softmax", input_dim=5)], n_threads=np.int64(1))
    m.compile("adam", "sparse_categorical_crossentropy")
    assert type(m.n_threads) is int
    m.save(tmp_path / "m.npz")
    assert fastmlp.load_model(tmp_path / "m.npz").n_threads == 1


def test_newer_format_is_refused(saved, tmp_path):
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    cfg = json.loads(arrays.pop("fastmlp_config").tobytes())
    arrays.pop("fastmlp_sha256")
    cfg["format_version"] = 99
    config_bytes = json.dumps(cfg).encode()
    arrays["fastmlp_sha256"] = np.frombuffer(
        model_module._digest(config_bytes, arrays).encode(), dtype=np.uint8)
    arrays["fastmlp_config"] = np.frombuffer(config_bytes, dtype=np.uint8)
    out = tmp_path / "future.npz"
    np.savez(out, **arrays)
    with pytest.raises(ValueError, match="newer fastmlp"):
        fastmlp.load_model(out)


# ---- atomic saving ----------------------------------------------------------------------
def test_failed_save_keeps_the_previous_file(saved, tmp_path, monkeypatch):
    before = open(saved, "rb").read()
    m = _trained("numpy", epochs=3)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial data")
        raise OSError("disk full")
    monkeypatch.setattr(model_module.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        m.save(saved)
    monkeypatch.undo()
    assert open(saved, "rb").read() == before
    assert os.listdir(tmp_path) == ["good.npz"]          # the temporary file is gone
    fastmlp.load_model(saved)


def test_save_to_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _trained("numpy", epochs=1).save(tmp_path / "nope" / "m.npz")


def test_save_overwrites(tmp_path):
    path = tmp_path / "m.npz"
    a = _trained("numpy", epochs=1)
    a.save(path)
    b = _trained("numpy", epochs=3)
    b.save(path)
    assert _same(fastmlp.load_model(path).get_weights(), b.get_weights())


# ---- weights only -------------------------------------------------------------------------
def test_save_and_load_weights(tmp_path, device):
    m = _trained(device)
    path = m.save_weights(tmp_path / "w.npz")
    fresh = Model([Dense(7, "relu", input_dim=5), Dense(4, "tanh", use_bias=False),
                   Dense(3, "softmax")], device=device, seed=1)
    fresh.load_weights(path)
    assert _same(fresh.get_weights(), m.get_weights())
    # width inferred from the file when the model was not built yet
    lazy = Model([Dense(7, "relu"), Dense(4, "tanh", use_bias=False), Dense(3, "softmax")],
                 device=device)
    lazy.load_weights(path)
    assert lazy.input_dim == 5 and _same(lazy.get_weights(), m.get_weights())
    # full model files hold weights too
    full = m.save(tmp_path / "full.npz")
    fresh.load_weights(full)
    wrong = Model([Dense(6, "relu", input_dim=5), Dense(3, "softmax")], device=device)
    with pytest.raises(ValueError, match="layer sizes"):
        wrong.load_weights(path)
    with pytest.raises(ValueError, match="never built"):
        fresh.load_weights(Model([Dense(2)]).save(tmp_path / "unbuilt.npz"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and symlinks")
def test_save_keeps_file_modes_and_symlinks(tmp_path):
    m = _trained("cpu")
    old = os.umask(0o022)
    try:
        fresh = m.save(tmp_path / "fresh.npz")
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644     # not the temp file's 0600
        shared = tmp_path / "shared.npz"
        shared.write_bytes(b"old")
        os.chmod(shared, 0o640)
        m.save(shared)                                           # replacing a file keeps its mode
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o640
        link = tmp_path / "latest.npz"
        os.symlink(tmp_path / "fresh.npz", link)
        before = os.stat(fresh).st_mtime_ns
        m.save_weights(link)                                     # the link stays a link ...
        assert os.path.islink(link)
        assert os.stat(fresh).st_mtime_ns >= before              # ... to the file written
        fresh_model = _trained("cpu", epochs=1)
        fresh_model.load_weights(tmp_path / "fresh.npz")
        assert _same(fresh_model.get_weights(), m.get_weights())
    finally:
        os.umask(old)


def test_save_to_a_folder_is_refused_clearly(tmp_path):
    m = _trained("cpu")
    (tmp_path / "models").mkdir()
    for target in (tmp_path / "models", str(tmp_path / "models") + os.sep):
        with pytest.raises(ValueError, match="names a folder"):
            m.save(target)
    assert os.listdir(tmp_path / "models") == [] and not (tmp_path / "models.npz").exists()
    with pytest.raises(ValueError, match="is a folder"):
        fastmlp.load_model(tmp_path / "models")


def test_npz_is_added_to_names_with_dots(tmp_path):
    # as numpy.savez: "ckpt-0.663" (a ModelCheckpoint name with a formatted loss) or
    # "model-v1.2" have a dot, not an extension
    m = _trained("cpu")
    for name in ("ckpt-0.663", "model-v1.2", "model.NPZ"):
        path = m.save(tmp_path / name)
        assert path.lower().endswith(".npz") and os.path.exists(path)
        assert fastmlp.load_model(tmp_path / name).get_config() == m.get_config()
    assert sorted(os.listdir(tmp_path)) == ["ckpt-0.663.npz", "model-v1.2.npz", "model.NPZ"]
