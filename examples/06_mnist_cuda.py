"""The course's largest MNIST model (ReLU(500)-ReLU(500), SGD + Nesterov, batch 50,
early stopping) on the GPU, next to the same model on the CPU.

Skips politely when no usable GPU (CuPy + CUDA) is present.  Needs MNIST like
``03_mnist.py``.

Run:  python examples/06_mnist_cuda.py
"""

import importlib.util
from pathlib import Path

import fastmlp
from fastmlp.backends import CUPY_UNAVAILABLE_REASON
from fastmlp.datasets import find_mnist


def _course_example():
    """Import the helpers of 03_mnist.py (its file name is not a module name)."""
    path = Path(__file__).with_name("03_mnist.py")
    spec = importlib.util.spec_from_file_location("fastmlp_example_03_mnist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(quick=False, compare_cpu=True):
    """Train on device="cuda" (and "cpu"); return the numbers, or None when skipped."""
    if not fastmlp.HAS_CUPY:
        print(f"skipping: no usable GPU ({CUPY_UNAVAILABLE_REASON})")
        return None
    if quick and find_mnist() is None:
        print("skipping: no MNIST file (set FASTMLP_DATA); quick mode never downloads")
        return None
    course = _course_example()
    train, val, test = course.course_data(every=30 if quick else 10)
    max_epochs = 5 if quick else 100
    rows = {}
    for device in ("cuda", "cpu") if compare_cpu else ("cuda",):
        try:
            model = course.course_model((500, 500), 0.1, device=device)
            model.build(784)
        except ImportError as exc:   # the compiled CPU engine is missing
            print(f"{device:5s}: skipped ({exc})")
            continue
        history, seconds = course.train_course_model(model, train, val,
                                                     max_epochs=max_epochs)
        accuracy = float(model.evaluate(*test)["accuracy"])
        epochs = len(history.history["loss"])
        rows[device] = {"test_accuracy": accuracy, "seconds": seconds, "epochs": epochs}
        print(f"{device:5s}: test accuracy {accuracy:.4f}, {epochs} epochs in "
              f"{seconds:.2f} s ({seconds / epochs * 1000:.0f} ms per epoch)")
    return rows


if __name__ == "__main__":
    main()
