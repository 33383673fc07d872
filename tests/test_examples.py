"""Smoke tests of examples/*.py: each ``main(quick=True)`` runs on reduced sizes and
reaches sensible numbers."""

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

import fastmlp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"




DEVICE = "cpu"


def load_example(name):
    """Import examples/<name>.py as a module (its file name is not an identifier)."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fastmlp_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path):
    path = Path(path)
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_every_example_has_a_quick_main():
    names = sorted(p.stem for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert len(names) == 6, names
    for name in names:
        source = (EXAMPLES / f"{name}.py").read_text()
        assert 'if __name__ == "__main__":' in source, name
        main = load_example(name).main
        assert inspect.signature(main).parameters["quick"].default is False, name


def test_01_iris(capsys):
    result = load_example("01_iris").main(quick=True, device=DEVICE)
    out = capsys.readouterr().out
    assert result["val_accuracy"] >= 0.9
    assert len(result["history"]["val_accuracy"]) == 10
    proba = np.asarray(result["probabilities"])
    assert proba.shape == (6, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert "validation accuracy" in out and "setosa" in out


def test_02_circles(tmp_path):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (fastmlp[plot])")
    result = load_example("02_circles").main(quick=True, output_dir=tmp_path, device=DEVICE)
    assert result["train_accuracy"] >= 0.78
    assert result["test_accuracy"] >= 0.7
    # fastmlp computes exactly what the hand-written NumPy loop computes
    assert result["weight_difference"] < 1e-8
    assert_png(result["plot"])


def test_03_mnist(tmp_path, request):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (fastmlp[plot])")
    request.getfixturevalue("mnist_path")  # skips, saying why, without an MNIST file
    result = load_example("03_mnist").main(quick=True, output_dir=tmp_path, device=DEVICE)
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["logistic regression"]["params"] == 7850
    assert rows["ReLU(50)"]["params"] == 39760
    assert rows["logistic regression"]["test_accuracy"] >= 0.8
    assert rows["ReLU(50)"]["test_accuracy"] >= 0.85
    for path in result["plots"]:
        assert_png(path)


def test_04_breast_cancer_gridsearch():
    result = load_example("04_breast_cancer_gridsearch").main(quick=True, device=DEVICE)
    assert len(result["mean_test_scores"]) == 2
    assert np.all(result["mean_test_scores"] >= 0.93)
    assert result["test_score"] >= 0.9


def test_05_kfold_and_spec(capsys):
    result = load_example("05_kfold_and_spec").main(quick=True, device=DEVICE)
    assert len(result["fold_accuracies"]) == 3
    assert result["mean_accuracy"] >= 0.9
    assert "Total params: 641" in capsys.readouterr().out   # 30*16+16 + 16*8+8 + 8+1


def test_06_mnist_cuda(capsys, request):
    example = load_example("06_mnist_cuda")
    if not fastmlp.HAS_CUPY:
        assert example.main(quick=True) is None
        assert "skipping: no usable GPU" in capsys.readouterr().out
        return
    request.getfixturevalue("mnist_path")  # skips, saying why, without an MNIST file
    rows = example.main(quick=True)
    assert rows["cuda"]["test_accuracy"] >= 0.85


def test_02_circles_without_matplotlib(tmp_path, monkeypatch, capsys):
    # a plain `pip install .` has no matplotlib: the example still runs and says the plot
    # is skipped (it had ended in an ImportError traceback)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)   # import fails
    result = load_example("02_circles").main(quick=True, output_dir=tmp_path, device=DEVICE)
    assert result["plot"] is None and result["test_accuracy"] >= 0.7
    assert "the plot is skipped" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
