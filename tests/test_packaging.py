"""Which copy of fastmlp the tests import, and what was compiled into it.

CI (``.ci/run``) installs the package, then runs this suite with

* ``FASTMLP_EXPECT_INSTALLED=1``: the imported package must be the installed one
  (in site-packages), never the source checkout, which holds no compiled engine;
* ``FASTMLP_EXPECT_OPENMP=1`` (or ``0``): the engine must (or must not) have been
  built with OpenMP, e.g. ``FASTMLP_NO_OPENMP=1 pip install .`` expects ``0``.

Without those variables the tests still check that the compiled engine belongs to
the imported package and that the OpenMP flag is reported as a plain bool.
"""
import os
import sysconfig
from pathlib import Path

import fastmlp.backends
from fastmlp.backends.cpu import _blas, _network, openmp_enabled

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
