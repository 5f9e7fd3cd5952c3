"""Pure statistics for OOD-rate monitoring: binomial spike test and binomial CUSUM.

Everything here is a pure function of counts, so rules can be replayed over the
score-log history and unit-tested against scipy.

Binomial spike test
    For a batch of ``n`` images with ``x`` flagged OOD and an expected rate
    ``p0 = 1 - tpr_target``, the one-sided p-value is
    ``P(X >= x | Bin(n, p0))`` (``scipy.stats.binomtest(..., alternative="greater")``).
    An alert fires when ``p <= alpha``. The test is discrete, so its realised
    size ``P(X >= c)`` (``c`` = :func:`critical_count`) is ``<= alpha``.

Binomial CUSUM (Reynolds & Stoumbos, 1999)
    To detect a sustained shift from ``p0`` to ``p1 > p0``, accumulate
    ``S_t = max(0, S_{t-1} + x_t - k * n_t)`` and alarm when ``S_t > h``, then
    restart at 0. The optimal reference value ``k`` (a rate between ``p0`` and ``p1``)
    comes from the log-likelihood ratio, see :func:`cusum_reference_value`.

    Choosing ``h``: pick the in-control average run length (ARL0, expected number
    of in-distribution batches between false alarms) you accept, e.g. 500 batches
    for daily batches ≈ one false alarm every 1.4 years, then call
    :func:`choose_cusum_h`, which bisects ``h`` on a seeded Monte-Carlo estimate of
    ARL0 (:func:`cusum_arl`). The expected detection delay after a step to ``p1``
    is roughly ``h / (n * (p1 - k))`` batches (plus ~1 batch of overshoot);
    :func:`cusum_arl` with ``p=p1`` gives the simulated value.

Example:
    >>> round(binomial_pvalue(12, 100, 0.05), 4)
    0.0043
    >>> critical_count(100, 0.05, 0.01)
    12
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

from odin_monitor.monitoring.errors import ConfigError


def _check_rate(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or not 0.0 < float(p) < 1.0:
        raise ConfigError(f"Expected {name} strictly between 0 and 1 but got {p!r}.")
    return float(p)


def _check_counts(x: int, n: int) -> tuple[int, int]:
    if int(n) <= 0 or int(x) < 0 or int(x) > int(n):
        raise ConfigError(f"Expected counts with 0 <= x <= n and n > 0 but got x={x}, n={n}.")
    return int(x), int(n)


def binomial_pvalue(x: int, n: int, p0: float) -> float:
    """One-sided p-value ``P(X >= x)`` for ``X ~ Bin(n, p0)`` (``binomtest`` "greater").

    Example:
        >>> binomial_pvalue(0, 10, 0.5)
        1.0
    """
    x, n = _check_counts(x, n)
    p0 = _check_rate("p0", p0)
    return float(_st.binomtest(x, n, p0, alternative="greater").pvalue)


def critical_count(n: int, p0: float, alpha: float) -> int:
    """Smallest ``c`` with ``P(X >= c | Bin(n, p0)) <= alpha`` (``n + 1`` if none).

    A batch is flagged by the spike test iff its OOD count is ``>= c``.

    Example:
        >>> critical_count(20, 0.05, 0.05)
        4
    """
    _check_counts(0, n)
    p0 = _check_rate("p0", p0)
    alpha = _check_rate("alpha", alpha)
    # sf(c - 1) = P(X >= c); search the smallest c with sf(c-1) <= alpha.
    c = int(_st.binom.isf(alpha, n, p0)) + 1
    while c > 0 and _st.binom.sf(c - 2, n, p0) <= alpha:
        c -= 1
    while c <= n and _st.binom.sf(c - 1, n, p0) > alpha:
        c += 1
    return c


def realized_size(n: int, p0: float, alpha: float) -> float:
    """Exact false-alarm probability of the discrete spike test (``<= alpha``).

    Example:
        >>> realized_size(100, 0.05, 0.01) <= 0.01
        True
    """
    c = critical_count(n, p0, alpha)
    return float(_st.binom.sf(c - 1, n, p0)) if c <= n else 0.0


def cusum_reference_value(p0: float, p1: float) -> float:
    """Optimal binomial-CUSUM reference rate ``k`` for detecting ``p0 -> p1``.

    ``k = ln((1-p0)/(1-p1)) / ln(p1(1-p0) / (p0(1-p1)))``, which lies in ``(p0, p1)``.

    Example:
        >>> 0.05 < cusum_reference_value(0.05, 0.10) < 0.10
        True
    """
    p0 = _check_rate("p0", p0)
    p1 = _check_rate("p1", p1)
    if p1 <= p0:
        raise ConfigError(f"Expected the out-of-control rate p1 > p0={p0} but got p1={p1}.")
    return math.log((1 - p0) / (1 - p1)) / math.log(p1 * (1 - p0) / (p0 * (1 - p1)))


def cusum_path(
    counts: Sequence[int], sizes: Sequence[int], k: float, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Run the binomial CUSUM over per-batch counts; restart at 0 after each alarm.

    Args:
        counts: OOD count per batch.
        sizes: Batch sizes (same length as ``counts``).
        k: Reference rate (per image); see :func:`cusum_reference_value`.
        h: Decision interval, in units of flagged images.

    Returns:
        ``(statistic, alarm)`` arrays; ``statistic[t]`` is ``S_t`` before any restart.

    Example:
        >>> s, a = cusum_path([0, 5, 5], [10, 10, 10], k=0.2, h=4.0)
        >>> a.tolist()
        [False, False, True]
    """
    x = np.asarray(counts, dtype=float)
    n = np.asarray(sizes, dtype=float)
    if x.shape != n.shape:
        raise ConfigError(
            f"Expected counts and sizes of equal length but got {x.shape} vs {n.shape}."
        )
    if h <= 0:
        raise ConfigError(f"Expected a positive CUSUM decision interval h but got {h!r}.")
    stat = np.zeros(x.shape)
    alarm = np.zeros(x.shape, dtype=bool)
    s = 0.0
    for t in range(x.size):
        s = max(0.0, s + x[t] - k * n[t])
        stat[t] = s
        if s > h:
            alarm[t] = True
            s = 0.0
    return stat, alarm


def cusum_arl(
    p: float,
    n: int,
    k: float,
    h: float,
    *,
    n_sims: int = 2000,
    max_steps: int = 100_000,
    seed: int = 0,
) -> float:
    """Monte-Carlo average run length (batches until the first alarm) at rate ``p``.

    With ``p = p0`` this is the in-control ARL0; with ``p = p1`` it is the
    expected detection delay (counting the alarm batch) after a step at time 0.

    Example:
        >>> cusum_arl(0.5, 10, k=0.2, h=1.0, n_sims=200) < 2
        True
    """
    p = _check_rate("p", p)
    rng = np.random.default_rng(seed)
    s = np.zeros(n_sims)
    run = np.zeros(n_sims)
    alive = np.ones(n_sims, dtype=bool)
    for step in range(1, max_steps + 1):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        x = rng.binomial(n, p, size=idx.size)
        s[idx] = np.maximum(0.0, s[idx] + x - k * n)
        fired = s[idx] > h
        run[idx[fired]] = step
        alive[idx[fired]] = False
    run[alive] = max_steps  # censored: a lower bound
    return float(run.mean())


def choose_cusum_h(
    p0: float,
    n: int,
    k: float,
    target_arl0: float,
    *,
    n_sims: int = 1000,
    seed: int = 0,
    tol: float = 0.05,
) -> float:
    """Smallest decision interval ``h`` whose simulated ARL0 reaches ``target_arl0``.

    Bisects ``h`` on :func:`cusum_arl` (seeded, so deterministic). The binomial
    CUSUM is discrete, so ARL0 jumps with ``h``; the result is the bisection point
    within ``tol`` flagged images.

    Example:
        >>> h = choose_cusum_h(0.05, 100, cusum_reference_value(0.05, 0.1), 50, n_sims=300)
        >>> h > 0
        True
    """
    if target_arl0 <= 1:
        raise ConfigError(f"Expected a target in-control ARL > 1 batch but got {target_arl0!r}.")
    lo, hi = 0.0, 1.0
    max_steps = int(50 * target_arl0)
    while cusum_arl(p0, n, k, hi, n_sims=n_sims, seed=seed, max_steps=max_steps) < target_arl0:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ConfigError("Could not reach the target ARL0; check p0, n and k.")
    while hi - lo > tol:
        mid = (lo + hi) / 2
        arl = cusum_arl(p0, n, k, mid, n_sims=n_sims, seed=seed, max_steps=max_steps)
        if arl >= target_arl0:
            hi = mid
        else:
            lo = mid
    return hi
