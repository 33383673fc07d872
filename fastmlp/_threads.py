"""Thread count, resolved once: ``n_threads`` argument > ``set_num_threads`` >
``OMP_NUM_THREADS`` > the CPUs this process may use (affinity and cgroup quota).

Never ``os.cpu_count()`` alone: in a container that oversubscribes.
"""

from __future__ import annotations

import math
import os

_user_default = None


def _cgroup_cpu_limit():
    """CPUs allowed by a cgroup v2/v1 quota, or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.floor(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


def available_cpus() -> int:
    """CPUs this process may really use."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(n, limit) if limit else n)


def default_n_threads() -> int:
    if _user_default is not None:
        return _user_default
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return available_cpus()


def set_num_threads(n_threads) -> None:
    """Set the default number of threads for networks created afterwards
    (``None`` restores the automatic choice)."""
    global _user_default
    _user_default = None if n_threads is None else resolve_n_threads(n_threads)


def get_num_threads() -> int:
    """The thread count a network created now would use."""
    return default_n_threads()


def resolve_n_threads(n_threads=None) -> int:
    """``None`` -> the default; a positive int as given; ``-1`` -> all available CPUs."""
    if n_threads is None:
        return default_n_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and \
            not (hasattr(n_threads, "__index__")):
        raise TypeError(f"n_threads must be an int or None; got {n_threads!r}")
    n = int(n_threads)
    if n == -1:
        return available_cpus()
    if n < 1:
        raise ValueError(f"n_threads={n_threads!r}: expected a positive int, -1 (all CPUs) "
                         "or None")
    return n
