"""Which copy of fastmlp the tests import, and what was compiled into it.

CI (``.ci/run``) installs the package, then runs this suite with

* ``FASTMLP_EXPECT_INSTALLED=1``: the imported package must be the installed one
  (in site-packages), never the source checkout, which holds no compiled engine;
* ``FASTMLP_EXPECT_OPENMP=1`` (or ``0``): the engine must (or must not) have been
  built with OpenMP, e.g. ``FASTMLP_NO_OPENMP=1 pip install .`` expects ``0``;
* ``FASTMLP_EXPECT_SIMD=x86-64-v4`` (or ``x86-64-v3``, ``baseline``): the multiversioned
  kernels that run must be that level's, e.g. ``FASTMLP_SIMD=baseline pip install .``
  expects ``baseline`` (CI's step 4 tests the code of older CPUs this way).

Without those variables the tests still check that the compiled engine belongs to
the imported package, that the OpenMP flag is reported as a plain bool, and that the
SIMD level reported is the loader's choice and agrees with the CPU's features.
"""
import os
import platform
import sys
import sysconfig
from pathlib import Path

import pytest

import fastmlp.backends
from fastmlp.backends.cpu import _blas, _network, openmp_enabled, simd_build, simd_level

#: the directory of the imported ``fastmlp`` package
PACKAGE_DIR = Path(fastmlp.backends.__file__).resolve().parents[1]


def _installed_locations():
    paths = sysconfig.get_paths()
    return {Path(paths[key]).resolve() for key in ("purelib", "platlib")}


def test_compiled_engine_belongs_to_the_imported_package():
    for module in (_blas, _network):
        assert Path(module.__file__).resolve().parent == PACKAGE_DIR / "backends" / "cpu", (
            f"{module.__name__} was loaded from {module.__file__}, outside {PACKAGE_DIR}")


def test_imported_package_is_the_installed_one_when_ci_asks():
    site_dirs = _installed_locations()
    is_installed = PACKAGE_DIR.parent in site_dirs
    if os.environ.get("FASTMLP_EXPECT_INSTALLED") == "1":
        assert is_installed, (f"fastmlp imported from {PACKAGE_DIR}, not from the "
                              f"installed package in {sorted(map(str, site_dirs))}")
    if is_installed:
        shipped_sources = sorted(str(p.relative_to(PACKAGE_DIR)) for p in PACKAGE_DIR.rglob("*")
                                 if p.suffix in (".pyx", ".pxd", ".c", ".h"))
        assert shipped_sources == [], "the installed package ships build sources"


def test_openmp_build_matches_ci_expectation():
    enabled = openmp_enabled()
    assert isinstance(enabled, bool)
    expected = os.environ.get("FASTMLP_EXPECT_OPENMP")
    if expected is not None:
        assert expected in ("0", "1"), "FASTMLP_EXPECT_OPENMP must be 0 or 1"
        assert enabled is (expected == "1"), (
            f"the engine was built {'with' if enabled else 'without'} OpenMP, "
            f"but FASTMLP_EXPECT_OPENMP={expected}")


def _numpy_cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - older numpy layout
        from numpy.core._multiarray_umath import __cpu_features__
    return __cpu_features__


def test_simd_level_is_what_the_build_and_the_cpu_allow():
    """simd_level() is the clone the loader resolved (csrc/rng.c's probe); it must be the
    highest level both compiled and supported, judged here by numpy's own CPU features."""
    level, build = simd_level(), simd_build()
    assert build in (4, 3, 0)
    assert level in ("x86-64-v4", "x86-64-v3", "baseline"), level   # never "unknown"
    if build == 0 or platform.machine().lower() not in ("x86_64", "amd64"):
        assert level == "baseline"
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("SIMD clones are built on x86-64 Linux only")
    features = _numpy_cpu_features()
    v4 = features.get("AVX512_SKX", False)          # AVX-512 F, CD, BW, DQ, VL
    v3 = all(features.get(name, False) for name in ("AVX2", "FMA3", "F16C"))
    expected = ("x86-64-v4" if build >= 4 and v4 else "x86-64-v3" if v3 else "baseline")
    assert level == expected, (level, expected, build)
    if level != "x86-64-v4":
        # no AVX-512 code may run: the direct products fall back to BLAS
        assert not _network.direct_kernels_available()


def test_simd_level_matches_ci_expectation():
    expected = os.environ.get("FASTMLP_EXPECT_SIMD")
    if expected is None:
        assert isinstance(simd_level(), str)
        return
    assert expected in ("x86-64-v4", "x86-64-v3", "baseline"), (
        "FASTMLP_EXPECT_SIMD must be x86-64-v4, x86-64-v3 or baseline")
    assert simd_level() == expected, (
        f"the kernels running are the {simd_level()} ones (build level {simd_build()}), "
        f"but FASTMLP_EXPECT_SIMD={expected}")

