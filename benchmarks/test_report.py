"""Checks of the report's own pieces (`pytest benchmarks/`; not timings): the products a
step is made of, and the 'products alone' plans that give every target its ceiling."""
import numpy as np

from benchmarks.report import (ONE_THREAD_PRODUCTS, SKIP_PRODUCTS, products_alone,
                               products_epoch_fns, step_products)


def test_step_products_are_forward_and_backward_of_every_layer():
    # (kind, M, N, K): forward Z = A @ W; dW = A^T @ dZ; dA = dZ @ W^T past layer 0
    assert step_products((4, 5, 3), 7) == [
        ("nn", 7, 5, 4), ("tn", 4, 5, 7),
        ("nn", 7, 3, 5), ("tn", 5, 3, 7), ("nt", 7, 5, 3)]
    assert step_products((4, 5, 3), 7, train=False) == [("nn", 7, 5, 4), ("nn", 7, 3, 5)]


def test_flops_of_the_products_match_the_reports_count():
    # 6 x sum(fan_in x fan_out) per sample counts the first layer's input gradient too,
    # which no engine computes: the products come to 6x less one layer-0 product
    sizes, b = (784, 500, 500, 10), 32
    flops = sum(2 * M * N * K for _, M, N, K in step_products(sizes, b))
    macs = sum(a * c for a, c in zip(sizes[:-1], sizes[1:]))
    assert flops == 6 * b * macs - 2 * b * 784 * 500


def test_products_plans_run_and_the_fastest_is_kept():
    from fastmlp.backends.cpu import _network
    fns = products_epoch_fns((20, 30, 5), 16, 3, n_threads=2)
    labels = [how for _, how in fns]
    # all rows on two threads, and split: each thread on 8 of the 16 rows
    assert any("all 16 rows" in how for how in labels)
    assert any("each on 8 of the 16 rows" in how for how in labels)
    assert any("BLAS" in how for how in labels)
    assert any("direct" in how for how in labels) == _network.direct_kernels_available()
    for run in fns.values():
        run()
    times = {key: float(i + 1) for i, key in enumerate(fns)}
    times["fastmlp"] = 0.5  # other systems are ignored
    assert products_alone(times) == (1.0, next(iter(fns))[1])
    # a second label keeps a second set of plans apart (e: the one-thread products)
    one = products_epoch_fns((20, 30, 5), 16, 3, 1, label=ONE_THREAD_PRODUCTS)
    assert all(label == ONE_THREAD_PRODUCTS for label, _ in one)
    times.update({key: 0.25 for key in one})
    assert products_alone(times) == (1.0, next(iter(fns))[1])
    assert products_alone(times, ONE_THREAD_PRODUCTS)[0] == 0.25
    # one thread: no split plan; long batches: BLAS only
    assert all("each on" not in how for _, how in products_epoch_fns((20, 30, 5), 16, 3, 1))
    assert all("BLAS" in how for _, how in products_epoch_fns((20, 30, 5), 600, 1, 2))


def test_products_plans_skipping_the_first_layers_zeros_come_with_the_data():
    """With the workload's data, the plans come again with the first layer's products
    through the zero-skipping kernels (where the CPU runs them), under their own label,
    and run; the fastest dense plan is still the one products_alone keeps."""
    from fastmlp.backends.cpu import _network
    rng = np.random.default_rng(0)
    X = (rng.random((64, 20)) * (rng.random((64, 20)) < 0.2)).astype(np.float32)
    fns = products_epoch_fns((20, 30, 5), 16, 3, n_threads=2, X=X)
    skipping = [key for key in fns if key[0] == SKIP_PRODUCTS]
    dense = [key for key in fns if key[0] == "products alone"]
    assert len(skipping) == (len(dense) if _network.direct_kernels_available() else 0)
    assert {how for _, how in skipping} <= {how for _, how in dense}
    for run in fns.values():
        run()
    # predictions: the forward product alone skips zeros
    for run in products_epoch_fns((20, 30, 5), 16, 1, 2, train=False, X=X).values():
        run()
    times = {key: 1.0 + i for i, key in enumerate(dense)}
    times.update({key: 0.5 for key in skipping})
    assert products_alone(times) == (1.0, dense[0][1])
    if skipping:
        assert products_alone(times, SKIP_PRODUCTS)[0] == 0.5


def test_a_missed_target_is_never_shown_as_reached():
    from benchmarks.report import _shown
    assert _shown(2.51, 2.5) == "2.51x"
    assert _shown(2.4987, 2.5) == "2.499x"        # not "2.50x" beside a "no"
    assert _shown(1.2497, 1.25) == "1.2497x"
    assert _shown(0.91, 0.9, percent=True) == "91%"
    assert _shown(0.8962, 0.9, percent=True) == "89.6%"
    assert _shown(4.33, 3, 1) == "4.3x"
    assert _shown(104.4, 50, 0) == "104x"          # (b)'s whole-number ratios
    assert _shown(99.7, 100, 0) == "99.7x"         # not "100x" beside a "no"
