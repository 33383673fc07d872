"""Build of fastmlp's compiled extensions.

* Cython modules in fastmlp/backends/cpu, compiled together with the C kernels in csrc/.
* OpenMP when the compiler supports it (probed); otherwise a loud warning and
  single-threaded elementwise loops (the build still succeeds).
* Portable flags only: no -march=native / -ffast-math.  Wider SIMD comes from function
  multiversioning in csrc/fm_internal.h.
* FASTMLP_SIMD=x86-64-v3 or FASTMLP_SIMD=baseline (default: auto) leaves out the wider
  clones, so that this machine runs the code an AVX2-only or a pre-AVX2 CPU would (CI
  tests those paths this way; never for a wheel meant for users).
* Cython directives are set once here; FASTMLP_BOUNDSCHECK=1 turns bounds checking on
  for debugging.
"""
import os
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = ["csrc/rng.c", "csrc/activations.c", "csrc/losses.c", "csrc/optimizers.c",
        "csrc/gemm_small.c", "csrc/gemm_direct.c", "csrc/gather.c", "csrc/tiny.c",
        "csrc/zero_skip.c"]


def _compiler_accepts(compiler, flags, link_flags):
    """Compile and link a tiny OpenMP program with ``flags``."""
    src = textwrap.dedent("""
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return omp_get_max_threads() > 0 ? 0 : 1;
        }
    """)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "omp_probe.c")
        with open(path, "w") as f:
            f.write(src)
        try:
            objs = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "omp_probe"),
                                     extra_postargs=link_flags)
            return True
        except Exception:
            return False


def _openmp_flags(compiler):
    if os.environ.get("FASTMLP_NO_OPENMP", "") not in ("", "0"):
        return None
    ctype = compiler.compiler_type
    if ctype == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for cflags, lflags in candidates:
        if _compiler_accepts(compiler, cflags, lflags):
            return cflags, lflags
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        omp = _openmp_flags(self.compiler)
        if omp is None and os.environ.get("FASTMLP_NO_OPENMP", "") not in ("", "0"):
            print("fastmlp: building without OpenMP (FASTMLP_NO_OPENMP is set)",
                  file=sys.stderr)
        elif omp is None:
            warnings.warn(
                "\n" + "*" * 78 + "\nfastmlp: the C compiler does not support OpenMP; "
                "building WITHOUT it.\nElementwise loops will run on one thread "
                "(BLAS still uses its own threads).\n" + "*" * 78)
            print("fastmlp: building without OpenMP", file=sys.stderr)
        is_msvc = self.compiler.compiler_type == "msvc"
        for ext in self.extensions:
            if is_msvc:
                ext.extra_compile_args = ["/O2"]
            else:
                # -fno-math-errno lets sqrt vectorise; it changes no result (unlike -ffast-math).
                # -fno-trapping-math: the branch-free selects of csrc/vmath.h vectorise (GCC
                # would not compute a product it moved into a branch for both sides, in case
                # it raised an FP exception; fastmlp never enables FP traps).  No result
                # changes: no reassociation, NaN and signed-zero rules stay.
                # -ffp-contract=fast: a * b + c as one FMA where the CPU has it (GCC's default
                # outside strict ISO mode, which -std=c99 would switch off); not -ffast-math.
                # -fopenmp-simd: the kernels' `omp simd` reductions vectorise even in a build
                # without OpenMP threads.
                ext.extra_compile_args = ["-O3", "-std=c99", "-ffp-contract=fast",
                                          "-fno-strict-aliasing", "-fno-math-errno",
                                          "-fno-trapping-math",
                                          "-fopenmp-simd", "-Wno-unused-function",
                                          "-Wno-unknown-pragmas", "-Wno-psabi"]
            if omp is not None:
                ext.extra_compile_args += omp[0]
                ext.extra_link_args = list(ext.extra_link_args or []) + omp[1]
        # setuptools rebuilds an extension only when a source is newer than it: a build
        # directory left by another FASTMLP_SIMD, FASTMLP_NO_OPENMP or set of compiler flags
        # would be linked as it is.  The configuration (the macros and each extension's
        # flags) is stamped there, and a different one rebuilds all.
        config = "".join(f"{ext.name}: macros={ext.define_macros} "
                         f"cflags={ext.extra_compile_args} ldflags={ext.extra_link_args}\n"
                         for ext in self.extensions)
        stamp = os.path.join(self.build_temp, "fastmlp-build-config")
        try:
            with open(stamp) as f:
                self.force = self.force or f.read() != config
        except OSError:
            self.force = True
        super().build_extensions()
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(config)


# FASTMLP_SIMD -> the highest x86-64 feature level compiled (csrc/fm_internal.h).
SIMD_CLONES = {"auto": "4", "x86-64-v4": "4", "x86-64-v3": "3", "baseline": "0"}


def simd_clones():
    value = os.environ.get("FASTMLP_SIMD", "").strip() or "auto"
    if value not in SIMD_CLONES:
        raise SystemExit(f"fastmlp: FASTMLP_SIMD={value!r} is not one of "
                         f"{', '.join(SIMD_CLONES)} (the highest x86-64 feature level to "
                         f"compile SIMD clones for)")
    if value != "auto":
        print(f"fastmlp: FASTMLP_SIMD={value}: SIMD clones up to level "
              f"{SIMD_CLONES[value]} only (a test build, not for users' wheels)",
              file=sys.stderr)
    return SIMD_CLONES[value]


def extensions():
    import numpy
    from Cython.Build import cythonize

    common = dict(include_dirs=["csrc", numpy.get_include()],
                  define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                                 ("FASTMLP_SIMD_CLONES", simd_clones())])
    exts = [
        Extension("fastmlp.backends.cpu._blas", ["fastmlp/backends/cpu/_blas.pyx"], **common),
        Extension("fastmlp.backends.cpu._network",
                  ["fastmlp/backends/cpu/_network.pyx"] + CSRC,
                  depends=["csrc/fastmlp.h", "csrc/fastmlp_kernels.inc", "csrc/fm_internal.h",
                           "csrc/vmath.h", "csrc/vmath_impl.inc"]
                  + [p.replace(".c", "_impl.inc") for p in CSRC if "rng" not in p],
                  **common),
    ]
    debug = os.environ.get("FASTMLP_BOUNDSCHECK", "") not in ("", "0")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": debug,
        "embedsignature": True,
    }
    return cythonize(exts, compiler_directives=directives)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
