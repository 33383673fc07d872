"""The benchmark report: every workload of issue 5, for every available system, measured
side by side in ONE run on the same data, with this machine's float32 GEMM peak.

    python -m benchmarks.report                 # print the table
    python -m benchmarks.report --write         # ... and rewrite benchmarks/RESULTS.md
    python -m benchmarks.report --quick         # smaller data, for a smoke test

Systems: fastmlp (device="cpu"), the NumPy reference (device="numpy"), scikit-learn's
MLPClassifier, and PyTorch (CPU) when installed (never a dependency of fastmlp); beside
them "products alone", the workload's matrix products and nothing else, through the
faster of this BLAS and fastmlp's direct kernels: the speed no training engine built on
these kernels can pass, which gives each target its ceiling (a prediction, which the
engine runs over chunks of rows whose activations stay in the caches, can pass it).  On
MNIST fastmlp's first layer skips the input's zeros (csrc/zero_skip.c), which dense
products cannot: "fastmlp, dense first layer" is the same engine with that switched off,
held to the dense products' ceilings, and the targets on a fraction of the GEMM peak and
on thread scaling use it.
FLOPs of training count 6 x sum(fan_in x fan_out) per sample (forward 2, backward 4);
prediction counts 2 x sum(fan_in x fan_out) per row.  Times are the best of a few
repetitions (these machines are noisy); ratios compare runs made minutes apart at most.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

from fastmlp.backends import make_network, validate_training_data
from fastmlp.backends.base import NetworkSpec, OptimizerSpec
from fastmlp.backends.cpu import blas_threads
from fastmlp.backends.cpu import _network as cpu_network
from fastmlp.backends.cpu._blas import gemm_rowmajor
from fastmlp.initializers import init_params

MNIST_NET = (784, 500, 500, 10)
IRIS_NET = (4, 10, 10, 3)
ONE_THREAD_PRODUCTS = "products alone, 1 thread"
# the products alone with the first layer's (two in training, the forward in a prediction)
# through the zero-skipping kernels, on the workload's own rows (csrc/zero_skip.c: what the
# engine runs on MNIST)
SKIP_PRODUCTS = "products alone, first layer skipping zeros"


def flops_per_sample(sizes, train=True):
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return (6 if train else 2) * macs


def interleaved_best(fns, repeats=3, warmup=1, scale=None):
    """Best time of each closure in ``fns`` (a dict), measured in interleaved rounds so
    that a noisy moment of the machine hits every system alike.  ``scale`` maps a name to
    a factor applied to its time (work measured on a slice, scaled to the whole)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t * (scale or {}).get(name, 1.0) for name, t in best.items()}


def interleaved_best_beside_peak(fns, repeats, peak_fn, peak_flops, peak, **kwargs):
    """interleaved_best(fns, repeats, **kwargs), with the peak product timed again just
    before and after the rounds (outside them: the systems keep their order); returns the
    times and the highest of `peak` and those two GFLOP/s, for a fraction-of-peak target
    measured while the host ran at the workload's speed."""
    before = peak_flops / best_time(peak_fn) / 1e9
    t = interleaved_best(fns, repeats, **kwargs)
    after = peak_flops / best_time(peak_fn) / 1e9
    return t, max(before, after, peak)


def best_time(fn, repeats=3, warmup=1):
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---- the products alone: a ceiling for any engine built on these kernels ----------------------
def step_products(sizes, b, train=True):
    """The matrix products of one step of a dense network on b rows, as (kind, M, N, K):
    per layer the forward Z = A_prev @ W ("nn", b x fan_out x fan_in) and, in training, the
    weight gradient dW = A_prev^T @ dZ ("tn", fan_in x fan_out x b) and, past the first
    layer, the input gradient dA_prev = dZ @ W^T ("nt", b x fan_in x fan_out)."""
    prods = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        prods.append(("nn", b, fan_out, fan_in))
        if train:
            prods.append(("tn", fan_in, fan_out, b))
            if layer > 0:
                prods.append(("nt", b, fan_in, fan_out))
    return prods


def _operands(kind, M, N, K, rng):
    """Random float32 operands of a product of this kind and shape, and its C."""
    shapes = {"nn": ((M, K), (K, N)), "tn": ((K, M), (K, N)), "nt": ((M, K), (N, K))}[kind]
    A, B = (rng.random(shape, dtype=np.float32) for shape in shapes)
    return A, B, np.empty((M, N), dtype=np.float32)


def _product_runner(kind, M, N, K, n_threads, kernel, calls, rng):
    """A closure that runs one product `calls` times back to back through one kernel
    ("blas": scipy's BLAS, "direct": fastmlp's direct kernels) with n_threads threads, on
    random float32 operands with C preallocated (the direct kernels' test entry point
    allocates its C once per closure call, spread over the `calls`)."""
    from fastmlp.backends.cpu import _network
    A, B, C = _operands(kind, M, N, K, rng)
    if kernel == "blas":
        def run():
            with blas_threads(n_threads):
                for _ in range(calls):
                    gemm_rowmajor(kind == "tn", kind == "nt", 1.0, A, B, 0.0, C)
    else:
        def run():
            _network.kernel_direct_gemm(kind, A, B, n_threads=n_threads, repeats=calls)
    return run


def _skip_runner(kind, Xb, N, n_threads, calls, rng, train=True):
    """A closure that runs the first layer's product of this kind `calls` times back to
    back through the zero-skipping kernels (the nonzero masks included, as the engine
    builds them every step) on the batch rows Xb: "nn" Xb @ W (W: fan_in x N), "tn" Xb^T @
    dZ (dZ: rows x N); with n_threads > 1, split as the engine's direct path splits them
    (kernel_skip_gemm); a prediction's (not train) on one thread by the engine's blocks of
    rows (predict_skip_rows)."""
    from fastmlp.backends.cpu import _network
    B = rng.random((Xb.shape[1], N) if kind == "nn" else (Xb.shape[0], N), dtype=np.float32)
    block = _network.predict_skip_rows() if not train and n_threads == 1 else 0
    out = np.empty((Xb.shape[0] if kind == "nn" else Xb.shape[1], N), dtype=np.float32)

    def run():   # into out: a 10,000-row prediction's new output would be timed with it
        _network.kernel_skip_gemm(kind, Xb, B, repeats=calls, n_threads=n_threads,
                                  block_rows=block, out=out)
    return run


def _plan_fn(sizes, rows, threads, copies, kernel, steps, train, rng, X=None):
    """One way to run the products of `steps` steps: `copies` threads at once (Python
    threads: the kernels release the GIL), each running every product of a step on `rows`
    rows `steps` times through `kernel` with `threads` threads inside it; with X (the
    workload's data), the first layer's forward and weight gradient skip zeros, on rows
    drawn from X (each copy its own)."""
    def runners():
        prods = step_products(sizes, rows, train)
        out = []
        if X is not None:
            Xb = np.ascontiguousarray(X[rng.choice(X.shape[0], rows, replace=False)])
            out = [_skip_runner(kind, Xb, N, threads, steps, rng, train)
                   for kind, _, N, _ in prods[:2 if train else 1]]
            prods = prods[len(out):]
        return out + [_product_runner(kind, M, N, K, threads, kernel, steps, rng)
                      for kind, M, N, K in prods]
    per_thread = [runners() for _ in range(copies)]

    def one_thread(runners):
        for runner in runners:
            runner()

    def run():
        if copies == 1:
            return one_thread(per_thread[0])
        import threading
        with blas_threads(1):
            workers = [threading.Thread(target=one_thread, args=(r,)) for r in per_thread]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
    return run


def products_epoch_fns(sizes, b, steps, n_threads, train=True, seed=0, label="products alone",
                       X=None):
    """The matrix products of `steps` steps on b rows and nothing else, in up to four
    plans, as {(label, how): closure} to time beside the systems (the report keeps the
    fastest, products_alone; a second label keeps a second set apart, as (e)'s one-thread
    products beside the two-thread ones).

    Each plan has one kernel for every product (BLAS, or up to 512 rows fastmlp's direct
    kernels; mixing them costs more than either, as BLAS's threads spin after their
    calls) and runs either every product on all b rows with n_threads threads in the
    kernel or, as a batch split over the threads runs, n_threads threads at once, each with
    the products of its b / n_threads rows.  Activations, losses, the optimizer and the
    split's gradient sum cost nothing here, so no engine built on these kernels steps
    faster: a peer's time over this time is the largest speed-up within their reach.

    With X (the workload's data, float32) and where the CPU runs the zero-skipping kernels
    (AVX-512), the plans come again under the label SKIP_PRODUCTS with the first layer's
    products skipping X's zeros (on rows drawn from X; the other layers as before): the
    ceiling for an engine that may skip them, as fastmlp does on MNIST."""
    from fastmlp.backends.cpu import _network
    rng = np.random.default_rng(seed)
    kernels = ["blas"]
    if _network.direct_kernels_available() and b <= 512:
        kernels.insert(0, "direct")
    shapes = [(b, n_threads, 1)]
    if n_threads > 1 and b >= 2 * n_threads:
        shapes.append((-(-b // n_threads), 1, n_threads))
    variants = [(label, None)]
    if X is not None and _network.direct_kernels_available():
        variants.append((SKIP_PRODUCTS, np.ascontiguousarray(X, dtype=np.float32)))
    fns = {}
    for name, data in variants:
        for rows, threads, copies in shapes:
            for kernel in kernels:
                how = f" ({n_threads} thread{'s' if n_threads > 1 else ''}, " + \
                    (f"each on {rows} of the {b} rows" if copies > 1 else f"all {b} rows") + \
                    f", {'direct kernels' if kernel == 'direct' else 'BLAS'})"
                fns[(name, how)] = _plan_fn(sizes, rows, threads, copies, kernel, steps,
                                            train, rng, data)
    return fns


def skipping_ceiling(times, t_p):
    """(seconds, how) of the fastest SKIP_PRODUCTS plan among interleaved_best's times
    ((None, "") where none was timed), and the ceiling time of the targets against peers:
    the faster of it and the dense products' t_p (the engine's own choice on MNIST)."""
    if not any(isinstance(key, tuple) and key[0] == SKIP_PRODUCTS for key in times):
        return None, "", t_p
    t_ps, how = products_alone(times, SKIP_PRODUCTS)
    return t_ps, how, min(t_p, t_ps)


def products_alone(times, label="products alone"):
    """(seconds, how) of the fastest products plan of this label among interleaved_best's
    times."""
    return min((sec, key[1]) for key, sec in times.items()
               if isinstance(key, tuple) and key[0] == label)


# ---- data ------------------------------------------------------------------------------------
def mnist_like(n, rng):
    """Real MNIST (pixels/255, float32) when a file is found, else random data of its shape."""
    path = None
    for cand in (os.environ.get("FASTMLP_DATA", ""),
                 os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")):
        if cand:
            p = cand if cand.endswith(".npz") else os.path.join(cand, "mnist.npz")
            if os.path.exists(p):
                path = p
                break
    if path is not None:
        with np.load(path) as f:
            X = f["x_train"].reshape(-1, 784).astype(np.float32) / 255.0
            y = f["y_train"].astype(np.int64)
        X, y = X[:n], y[:n]
        return np.ascontiguousarray(X), y, "MNIST"
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return X, y, "random MNIST-shaped"


# ---- systems -----------------------------------------------------------------------------------
DENSE = "fastmlp, dense first layer"   # the first layer's zero-skipping switched off


def dense_first_layer(run):
    """`run` with the first layer's zero-skipping products switched off
    (_network.set_skip_zeros): the engine's dense products alone, what the targets on a
    fraction of the GEMM peak and on thread scaling measure."""
    def dense_run():
        previous = cpu_network.set_skip_zeros(False)
        try:
            run()
        finally:
            cpu_network.set_skip_zeros(previous)
    return dense_run


def fastmlp_epoch_fn(sizes, X, y, batch_size, device="cpu", n_threads=None, momentum=0.9,
                     activation="relu"):
    spec = NetworkSpec(sizes, (activation,) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", dtype="float32",
                       weight_normalization="n_samples", penalty_normalization="none")
    net = make_network(spec, OptimizerSpec("sgd", 0.01, momentum=momentum), device=device,
                       n_threads=n_threads)
    net.set_params(init_params(spec, seed=0))
    Xc, Yc, _ = validate_training_data(spec, X, y)
    state = {"epoch": 0}

    def run():
        state["epoch"] += 1
        net.train_epoch(Xc, Yc, batch_size=batch_size, shuffle=True, seed=0,
                        epoch=state["epoch"])
    return run, net


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def torch_epoch_fn(sizes, X, y, batch_size, n_threads, activation="relu"):
    import torch
    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    from fastmlp.backends.base import ELU_ALPHA, LEAKY_RELU_SLOPE
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
           "leaky_relu": lambda: torch.nn.LeakyReLU(LEAKY_RELU_SLOPE),
           "elu": lambda: torch.nn.ELU(ELU_ALPHA), "softplus": torch.nn.Softplus,
           "gelu": torch.nn.GELU}[activation]   # GELU: the exact erf form, as fastmlp's
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    n = Xt.shape[0]
    loss_fn = torch.nn.functional.cross_entropy

    def run():
        perm = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            idx = perm[lo:lo + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return run, model


def sklearn_epoch_fn(sizes, X, y, batch_size, solver="sgd", momentum=0.9, alpha=0.0,
                     epochs=1):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def run():
        clf = MLPClassifier(hidden_layer_sizes=sizes[1:-1], solver=solver, momentum=momentum,
                            nesterovs_momentum=False, learning_rate_init=0.01 if solver == "sgd"
                            else 0.001, batch_size=batch_size, max_iter=epochs, alpha=alpha,
                            random_state=0, shuffle=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
    return run


# ---- measurements --------------------------------------------------------------------------------
class Report:
    def __init__(self):
        self.rows = []
        self.checks = []

    def add(self, workload, system, seconds, steps=None, flops=None, peak=None, note=""):
        self.rows.append(dict(workload=workload, system=system, seconds=seconds, steps=steps,
                              gflops=None if flops is None else flops / seconds / 1e9,
                              peak=peak, note=note))

    def time_of(self, workload, system):
        for r in self.rows:
            if r["workload"] == workload and r["system"] == system:
                return r["seconds"]
        return None

    def check(self, name, value, target, ok, ceiling=None, informational=False):
        """A target: its measured value, what is wanted, whether it is met, and optionally
        (text, reachable) the value the products alone allow and whether the wanted value
        lies within it.  informational: a value shown beside the targets, not one of
        issue 5's (its 'met' in parentheses)."""
        self.checks.append((name, value, target, ok, ceiling, informational))

    def table(self):
        lines = ["| workload | system | time / epoch or call | time / step | GFLOP/s | "
                 "% of sgemm peak | fastmlp speed-up |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            base = self.time_of(r["workload"], "fastmlp") or self.time_of(r["workload"], DENSE)
            step = "" if not r["steps"] else _fmt_time(r["seconds"] / r["steps"])
            gf = "" if r["gflops"] is None else f"{r['gflops']:.1f}"
            pk = "" if r["gflops"] is None or not r["peak"] else \
                f"{100 * r['gflops'] / r['peak']:.0f}%"
            ratio = "" if base is None or r["system"] == "fastmlp" else \
                f"{r['seconds'] / base:.2f}x"
            lines.append(f"| {r['workload']} | {r['system']}{r['note']} | "
                         f"{_fmt_time(r['seconds'])} | {step} | {gf} | {pk} | {ratio} |")
        return "\n".join(lines)

    def check_table(self):
        lines = ["| target | measured | wanted | the products alone allow | met |",
                 "|---|---|---|---|---|"]
        for name, value, target, ok, ceiling, informational in self.checks:
            text, reachable = ceiling if ceiling else ("", True)
            if informational:
                met = "(yes; not a target)" if ok else "(no; not a target)"
            else:
                met = "yes" if ok else "**no**" if reachable else "**no** (beyond the products)"
            lines.append(f"| {name} | {value} | {target} | {text} | {met} |")
        return "\n".join(lines)


def _fmt_time(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.2f} us"


def _shown(value, wanted, digits=2, percent=False):
    """value as text (a ratio "1.23x", or with percent "91%"), with more digits where
    the rounding would reach a target that the value misses (1.2497 is "1.2497x", not
    "1.25x" beside a "no")."""
    scale, unit = (100, "%") if percent else (1, "x")
    digits = max(digits - 2 if percent else digits, 0)
    text = f"{scale * value:.{digits}f}"
    while value < wanted and float(text) >= scale * wanted and digits < 6:
        digits += 1
        text = f"{scale * value:.{digits}f}"
    return text + unit


def _ceiling(value, wanted, percent=False):
    """(text, reachable) of what the products alone allow for a target."""
    text = f"{100 * value:.0f}%" if percent else f"{value:.2f}x"
    return text, value >= wanted


def _check_fraction_of_peak(rep, name, flops, t_f, t_p, peak_here):
    """The target ">= 90% of the sgemm peak" for a workload of `flops` that fastmlp ran in
    t_f seconds and its products alone in t_p, against the peak timed beside it."""
    frac = flops / t_f / 1e9 / peak_here
    rep.check(name, f"{_shown(frac, 0.9, percent=True)} (of {peak_here:.0f} GFLOP/s)",
              ">= 90%", frac >= 0.9, _ceiling(flops / t_p / 1e9 / peak_here, 0.9, percent=True))


def run_all(quick=False, repeats=3, n_threads=None):
    from fastmlp._threads import available_cpus
    n_threads = n_threads or available_cpus()
    rng = np.random.default_rng(0)
    rep = Report()
    have_torch = torch_available()
    # the peak: the best of a cache-friendly and a large product through scipy's BLAS,
    # with PyTorch's (MKL) beside it, interleaved
    fns = {}
    for size in ((512, 1024) if quick else (1024, 2048)):
        A = rng.random((size, size), dtype=np.float32)
        B = rng.random((size, size), dtype=np.float32)
        C = np.zeros((size, size), dtype=np.float32)

        def scipy_sgemm(A=A, B=B, C=C):
            with blas_threads(n_threads):
                gemm_rowmajor(False, False, 1.0, A, B, 0.0, C)
        fns[("scipy BLAS", size)] = scipy_sgemm
        if have_torch:
            import torch
            torch.set_num_threads(n_threads)
            At, Bt = torch.from_numpy(A), torch.from_numpy(B)
            fns[("PyTorch (MKL)", size)] = lambda At=At, Bt=Bt: torch.mm(At, Bt)
    # the larger product again just before and after the workloads whose target is a
    # fraction of the peak: the host's speed drifts between workloads
    peak_fn, peak_flops = fns[("scipy BLAS", size)], 2 * size ** 3
    t = interleaved_best(fns, repeats + 3)
    peak = max(2 * size ** 3 / sec / 1e9 for (name, size), sec in t.items()
               if name == "scipy BLAS")
    for (name, size), seconds in t.items():
        rep.add(f"sgemm ({size}^3)", name, seconds, flops=2 * size ** 3, peak=peak)
    n_a = 2048 if quick else 16384
    X, y, source = mnist_like(60000 if not quick else 4096, rng)
    Xa, ya = X[:n_a], y[:n_a]
    fl = flops_per_sample(MNIST_NET)

    # (a) 784-500-500-10, SGD momentum 0.9, float32, batch 32/128/512 ----------------------------
    n_ref = n_a // 8
    for bs in (32, 128, 512):
        wl = f"(a) 784-500-500-10 b{bs}"
        steps = -(-n_a // bs)
        fns = {"fastmlp": fastmlp_epoch_fn(MNIST_NET, Xa, ya, bs, n_threads=n_threads)[0],
               DENSE: dense_first_layer(fastmlp_epoch_fn(MNIST_NET, Xa, ya, bs,
                                                         n_threads=n_threads)[0])}
        ref = fastmlp_epoch_fn(MNIST_NET, Xa[:n_ref], ya[:n_ref], bs, device="numpy")[0]

        def numpy_ref(ref=ref):
            with blas_threads(n_threads):
                ref()
        fns["NumPy reference"] = numpy_ref
        if have_torch:
            fns["PyTorch"] = torch_epoch_fn(MNIST_NET, Xa, ya, bs, n_threads)[0]
        if bs == 512 and n_threads >= 2:
            fns["fastmlp, 1 thread"] = dense_first_layer(
                fastmlp_epoch_fn(MNIST_NET, Xa, ya, bs, n_threads=1)[0])
            # (e)'s reference: how far the same products themselves speed up on 2 threads
            fns.update(products_epoch_fns(MNIST_NET, bs, steps, 1, label=ONE_THREAD_PRODUCTS))
        fns.update(products_epoch_fns(MNIST_NET, bs, steps, n_threads, X=Xa))
        scale = {"NumPy reference": n_a / n_ref}
        if bs == 512:
            t, peak_here = interleaved_best_beside_peak(fns, repeats, peak_fn, peak_flops,
                                                        peak, scale=scale)
        else:
            t = interleaved_best(fns, repeats, scale=scale)
        t_f = t["fastmlp"]
        t_p, how = products_alone(t)
        t_ps, how_s, t_c = skipping_ceiling(t, t_p)
        t_d = t[DENSE]
        rep.add(wl, "fastmlp", t_f, steps, fl * n_a, peak)
        rep.add(wl, DENSE, t_d, steps, fl * n_a, peak)
        rep.add(wl, "NumPy reference", t["NumPy reference"], steps, fl * n_a, peak, " (scaled)")
        if have_torch:
            t_t = t["PyTorch"]
            rep.add(wl, "PyTorch", t_t, steps, fl * n_a, peak)
            want = {32: 2.5, 128: 1.3, 512: 1.25}[bs]
            rep.check(f"(a) b{bs} vs PyTorch", _shown(t_t / t_f, want), f">= {want}x",
                      t_t / t_f >= want, _ceiling(t_t / t_c, want))
        rep.add(wl, "products alone", t_p, steps, fl * n_a, peak, how)
        if t_ps is not None:
            rep.add(wl, SKIP_PRODUCTS, t_ps, steps, fl * n_a, peak, how_s)
        t_np = t["NumPy reference"]
        rep.check(f"(a) b{bs} vs NumPy reference", _shown(t_np / t_f, 3, 1), ">= 3x",
                  t_np / t_f >= 3, _ceiling(t_np / t_c, 3))
        if bs == 512:
            _check_fraction_of_peak(rep, "(a) b512 fraction of sgemm peak (dense first layer)",
                                    fl * n_a, t_d, t_p, peak_here)
            if "fastmlp, 1 thread" in t:
                t1 = t["fastmlp, 1 thread"]
                t_p1, how1 = products_alone(t, ONE_THREAD_PRODUCTS)
                rep.add("(e) b512, 1 thread", DENSE, t1, steps, fl * n_a, peak)
                rep.add("(e) b512, 1 thread", "products alone", t_p1, steps, fl * n_a, peak,
                        how1)
                # the products' own speed-up from 1 to 2 threads: the step's bound while the
                # rest of it (updates, gradient sum, waits) scales no better than they do
                rep.check("(e) 2 threads vs 1 thread (b512, dense first layer)",
                          _shown(t1 / t_d, 1.7), ">= 1.7x", t1 / t_d >= 1.7,
                          _ceiling(t_p1 / t_p, 1.7))

    # (b) iris-sized 4-10-10-3, batch 32: per-step overhead ---------------------------------------
    n_b = 150 * (40 if quick else 400)
    Xb = rng.normal(size=(n_b, 4)).astype(np.float32)
    yb = rng.integers(0, 3, n_b)
    steps_b = -(-n_b // 32)
    fns = {"fastmlp": fastmlp_epoch_fn(IRIS_NET, Xb, yb, 32, n_threads=n_threads)[0],
           "NumPy reference": fastmlp_epoch_fn(IRIS_NET, Xb[:4800], yb[:4800], 32,
                                               device="numpy")[0],
           "scikit-learn": sklearn_epoch_fn(IRIS_NET, Xb[:4800], yb[:4800], 32)}
    if have_torch:
        fns["PyTorch"] = torch_epoch_fn(IRIS_NET, Xb[:4800], yb[:4800], 32, 1)[0]
    scale = {k: n_b / 4800 for k in fns if k != "fastmlp"}
    t = interleaved_best(fns, repeats, scale=scale)
    t_f, t_s = t["fastmlp"], t["scikit-learn"]
    rep.add("(b) 4-10-10-3 b32", "fastmlp", t_f, steps_b)
    rep.add("(b) 4-10-10-3 b32", "NumPy reference", t["NumPy reference"], steps_b,
            note=" (scaled)")
    rep.add("(b) 4-10-10-3 b32", "scikit-learn", t_s, steps_b, note=" (scaled)")
    us = t_f / steps_b * 1e6
    rep.check("(b) time per step", f"{us:.2f} us", "<= 3 us", us <= 3)
    rep.check("(b) vs scikit-learn", _shown(t_s / t_f, 50, 0), ">= 50x", t_s / t_f >= 50)
    if have_torch:
        t_t = t["PyTorch"]
        rep.add("(b) 4-10-10-3 b32", "PyTorch", t_t, steps_b, note=" (scaled, 1 thread)")
        rep.check("(b) vs PyTorch", _shown(t_t / t_f, 100, 0), ">= 100x", t_t / t_f >= 100)

    # (c) scikit-learn's defaults on full MNIST: hidden 100, adam, batch 200 ---------------------------
    # per epoch: fits of 1 and 5 epochs, the difference over 4 (what a fit costs once, its
    # checks of the data and set-up, both systems pay outside their epochs)
    n_c = X.shape[0]
    fns, how = {}, ""
    for epochs in (1, 5):
        fns[("fastmlp", epochs)], how = fastmlp_sklearn_defaults_fn(X, y, epochs)
        fns[(DENSE, epochs)] = dense_first_layer(fastmlp_sklearn_defaults_fn(X, y, epochs)[0])
        fns[("scikit-learn", epochs)] = sklearn_epoch_fn((784, 100, 10), X, y, 200,
                                                         solver="adam", alpha=1e-4,
                                                         epochs=epochs)
    fns.update(products_epoch_fns((784, 100, 10), 200, -(-n_c // 200), n_threads, X=X))
    t = interleaved_best(fns, repeats, warmup=0 if not quick else 1)
    t_p, how_c = products_alone(t)
    t_ps, how_cs, t_c = skipping_ceiling(t, t_p)
    wl = f"(c) sklearn defaults, {n_c} rows"
    epoch = {name: (t[(name, 5)] - t[(name, 1)]) / 4 for name in ("fastmlp", DENSE,
                                                                    "scikit-learn")}
    rep.add(wl + ", per epoch", "fastmlp", epoch["fastmlp"], note=how)
    rep.add(wl + ", per epoch", DENSE, epoch[DENSE], note=how)
    rep.add(wl + ", per epoch", "scikit-learn", epoch["scikit-learn"])
    rep.add(wl + ", per epoch", "products alone", t_p, note=how_c)
    if t_ps is not None:
        rep.add(wl + ", per epoch", SKIP_PRODUCTS, t_ps, note=how_cs)
    rep.add(wl + ", fit(max_iter=1)", "fastmlp", t[("fastmlp", 1)], note=how)
    rep.add(wl + ", fit(max_iter=1)", "scikit-learn", t[("scikit-learn", 1)])
    ratio = epoch["scikit-learn"] / epoch["fastmlp"]
    rep.check("(c) vs scikit-learn per epoch", _shown(ratio, 4, 1), ">= 4x", ratio >= 4,
              _ceiling(epoch["scikit-learn"] / t_c, 4))
    ratio_fit = t[("scikit-learn", 1)] / t[("fastmlp", 1)]
    rep.check("(c) vs scikit-learn, a whole fit(max_iter=1)", _shown(ratio_fit, 4, 1), "(>= 4x)",
              ratio_fit >= 4, _ceiling(t[("scikit-learn", 1)] / t_c, 4), informational=True)

    # (d) predict 10,000 rows of 784-500-500-10 ---------------------------------------------------------
    n_d = 10000 if not quick else 2000
    Xd = np.ascontiguousarray(X[:n_d]) if X.shape[0] >= n_d else \
        rng.random((n_d, 784), dtype=np.float32)
    _, net = fastmlp_epoch_fn(MNIST_NET, Xd[:64], y[:64], 64, n_threads=n_threads)
    fl_d = flops_per_sample(MNIST_NET, train=False) * n_d
    fns = {"fastmlp": lambda: net.forward(Xd), DENSE: dense_first_layer(lambda: net.forward(Xd))}
    if have_torch:
        import torch
        _, model = torch_epoch_fn(MNIST_NET, Xd[:64], y[:64].astype(np.int64), 64, n_threads)
        Xt = torch.from_numpy(Xd)

        def tpred():
            with torch.no_grad():
                torch.softmax(model(Xt), dim=1)
        fns["PyTorch"] = tpred
    fns.update(products_epoch_fns(MNIST_NET, n_d, 1, n_threads, train=False, X=Xd))
    t, peak_here = interleaved_best_beside_peak(fns, repeats + 4, peak_fn, peak_flops, peak)
    t_f, t_d = t["fastmlp"], t[DENSE]
    t_p, how_d = products_alone(t)
    t_ps, how_ds, t_c = skipping_ceiling(t, t_p)
    wl_d = f"(d) predict {n_d} rows"
    rep.add(wl_d, "fastmlp", t_f, flops=fl_d, peak=peak)
    rep.add(wl_d, DENSE, t_d, flops=fl_d, peak=peak)
    # the fraction of the peak is the dense products' (as (a) b512's); the first layer's
    # zero-skipping counts against the peers
    _check_fraction_of_peak(rep, "(d) predict fraction of sgemm peak (dense first layer)", fl_d,
                            t_d, t_p, peak_here)
    if have_torch:
        t_t = t["PyTorch"]
        rep.add(wl_d, "PyTorch", t_t, flops=fl_d, peak=peak)
        rep.check("(d) predict vs PyTorch", _shown(t_t / t_f, 1.05), ">= 1.05x", t_t / t_f >= 1.05,
                  _ceiling(t_t / t_c, 1.05))
    rep.add(wl_d, "products alone", t_p, flops=fl_d, peak=peak, note=how_d)
    if t_ps is not None:
        rep.add(wl_d, SKIP_PRODUCTS, t_ps, flops=fl_d, peak=peak, note=how_ds)

    # (f) peak memory of fit on full MNIST float32 ----------------------------------------------------
    mem = peak_memory_of_fit(X, y)
    rep.memory = mem
    rep.check("(f) X (float32, C-contiguous) not copied", f"peak {mem['peak'] / 2**20:.1f} MiB "
              f"vs X {mem['x_bytes'] / 2**20:.1f} MiB", "peak < size of X",
              mem["peak"] < mem["x_bytes"])
    rep.check("(f) peak extra memory within budget", f"{mem['peak'] / 2**20:.1f} MiB",
              f"<= {mem['budget'] / 2**20:.1f} MiB (params x (2 + state) + workspaces + batch"
              f" + targets)", mem["peak"] <= mem["budget"])
    return rep, dict(peak=peak, source=source, n_threads=n_threads, have_torch=have_torch)


def fastmlp_sklearn_defaults_fn(X, y, epochs=1):
    """A fit of `epochs` epochs with scikit-learn's defaults through fastmlp.MLPClassifier
    (the drop-in), or through the engine with the same semantics when the front is
    unavailable."""
    try:
        from sklearn.exceptions import ConvergenceWarning

        from fastmlp import MLPClassifier

        def run():
            clf = MLPClassifier(max_iter=epochs, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(X, y)
        return run, " (MLPClassifier)"
    except ImportError:
        spec = NetworkSpec((784, 100, 10), ("relu", "softmax"), loss="categorical_crossentropy",
                           dtype="float32", l2=0.5e-4)
        net = make_network(spec, OptimizerSpec("adam", 1e-3, epsilon=1e-8))
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        def run():
            for _ in range(epochs):
                net.train_epoch(Xc, Yc, batch_size=200, shuffle=True)
        return run, " (engine)"


def peak_memory_of_fit(X, y):
    """tracemalloc peak (NumPy reports its buffers to it) of one epoch of fit."""
    from fastmlp.backends.base import OptimizerSpec as _O  # noqa: F401
    spec = NetworkSpec((784, 100, 10), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32")
    params = spec.n_params * 4
    try:
        from sklearn.exceptions import ConvergenceWarning

        from fastmlp import MLPClassifier
        clf = MLPClassifier(max_iter=1, random_state=0)
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        what = "fastmlp.MLPClassifier(max_iter=1).fit"
    except ImportError:
        net = make_network(spec, OptimizerSpec("adam", 1e-3))
        tracemalloc.start()
        Xc, Yc, _ = validate_training_data(spec, X, y)
        net.train_epoch(Xc, Yc, batch_size=200, shuffle=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        what = "engine epoch"
    # budget: params, grads, 2 Adam slots; a workspace for 200 rows (and for a prediction's
    # or full batch's chunks, call_chunk_rows); one gathered batch; the targets as one-hot
    # rows; a shuffled order
    from fastmlp.backends.cpu._network import call_chunk_rows
    ws_rows = max(200, call_chunk_rows())
    workspace = ws_rows * (2 * (100 + 10) + 10 + 784 + 10 + 1) * 4 + ws_rows * 8
    targets = X.shape[0] * 10 * 4 + X.shape[0] * 8
    budget = params * (2 + 2) + workspace + 200 * 784 * 4 + targets + X.shape[0] * 8
    return dict(peak=peak, budget=budget, x_bytes=X.nbytes, what=what)


def machine_description():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from fastmlp._threads import available_cpus
    return f"{model}, {available_cpus()} CPUs available, {platform.system()} {platform.machine()}"


def versions():
    import scipy
    import sklearn
    v = f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}," \
        f" scikit-learn {sklearn.__version__}"
    if torch_available():
        import torch
        v += f", torch {torch.__version__}"
    return v


def git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"],
                                       cwd=os.path.dirname(__file__), text=True).strip()
    except Exception:
        return "unknown"


def render(rep, info, command):
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [
        "# Benchmark results", "",
        f"- machine: {machine_description()}",
        f"- date: {now}",
        f"- commit: {git_commit()}",
        f"- command: `{command}`",
        f"- versions: {versions()}",
        f"- threads: {info['n_threads']}; data: {info['source']}; "
        f"measured sgemm peak {info['peak']:.1f} GFLOP/s",
        "",
        "Training FLOPs: 6 x sum(fan_in x fan_out) per sample; prediction: 2 x.  "
        "'fastmlp speed-up' = the row's time / fastmlp's time on the same workload "
        "(higher = fastmlp faster).  '(scaled)': measured on a slice of the data and "
        "scaled to the full epoch (per-step cost is what matters).  'products alone': the "
        "workload's matrix products and nothing else, each through the faster of this "
        "BLAS and fastmlp's direct kernels (see products_epoch_fns); no training engine "
        "built on these kernels can be faster, so a peer's time over theirs (the targets' column "
        "'the products alone allow') is the most any such engine can reach in training "
        "(a prediction, run layer after layer over chunks of rows that stay in the caches, "
        "can pass its plans, which multiply each layer over all the rows); for (e) that "
        "column is the products' own speed-up from 1 to 2 threads, which bounds the step's "
        "while the rest of the step scales no better than its products.  On MNIST the "
        "first layer's products skip the input's zeros (81% of the pixels; "
        "csrc/zero_skip.c), so fastmlp can pass 'products alone', which multiply every "
        "element; 'fastmlp, dense first layer' is the same engine with the skipping off, "
        "and GFLOP/s count the dense FLOPs either way; 'products alone, first layer "
        "skipping zeros' runs the first layer's products (forward and weight gradient; "
        "a prediction's forward alone) through the same skipping kernels (on the "
        "workload's rows, masks included), and the ceilings of the targets against peers "
        "are the faster of the two sets of plans; the targets on a fraction of the peak "
        "take the dense first layer.  The '% of "
        "sgemm peak' column is against the peak measured first; the targets on a fraction "
        "of the peak use the highest of that peak and the sgemm timed again just before "
        "and after their workload (the host's speed drifts from minute to minute).", "",
        "## Side by side", "", rep.table(), "",
        "## Targets (issue 5)", "", rep.check_table(), "",
    ]
    mem = getattr(rep, "memory", None)
    if mem:
        out += [f"Peak traced memory of {mem['what']} on the full data: "
                f"{mem['peak'] / 2**20:.1f} MiB (X itself is {mem['x_bytes'] / 2**20:.1f} MiB "
                "and is used in place).", ""]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data (smoke test)")
    parser.add_argument("--write", action="store_true", help="rewrite benchmarks/RESULTS.md")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    rep, info = run_all(quick=args.quick, repeats=args.repeats, n_threads=args.threads)
    command = "python -m benchmarks.report " + " ".join(argv if argv is not None else
                                                         sys.argv[1:])
    text = render(rep, info, command.strip())
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "RESULTS.md")
        existing = ""
        if os.path.exists(path):
            with open(path) as f:
                existing = f.read()
        marker = "\n## Notes"
        notes = existing[existing.index(marker):] if marker in existing else ""
        with open(path, "w") as f:
            f.write(text + notes)
    return rep


if __name__ == "__main__":
    main()
