"""Synthetic Gaussian-mixture data with a known Bayes classifier (sparse double descent studies).

Balanced binary classes in ``D`` dimensions, identity covariance everywhere; ``v1`` is the all-``nu``
vector and ``h = D/2``:

``linear``  class 0 ~ N(0, I),                          class 1 ~ N(v1, I)
``xor``     class 0 ~ ½N(0, I) + ½N(v1, I),             class 1 ~ ½N([0_h, v1_h], I) + ½N([v1_h, 0_h], I)

Because every covariance is I and every mean is constant on each half of the coordinates, the
class densities depend on ``x`` only through the half sums, which gives closed forms:

* linear: Bayes error ``Φ(-ν√D/2)`` (ν = 0.2, D = 100: 0.1587);
* xor: with ``p = Φ(-ν√D/(2√2))`` (the chance that a half-sum lands on the wrong side of its
  midpoint), an error happens when exactly one half does, so Bayes error ``2p(1-p)``
  (ν = 0.2, D = 100: 0.3646).

:func:`bayes_error_mc` estimates either from :func:`true_posterior` as an independent check.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

GMM_KINDS: tuple[str, ...] = ("linear", "xor")


def _check(kind: str, nu: float, dim: int) -> None:
    if kind not in GMM_KINDS:
        raise ValueError(f"unknown GMM kind {kind!r}; known: {list(GMM_KINDS)}")
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if kind == "xor" and int(dim) % 2:
        raise ValueError(f"xor GMM needs an even dim (two halves), got {dim}")
    if not math.isfinite(float(nu)):
        raise ValueError(f"nu must be finite, got {nu}")


def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def bayes_error_linear(nu: float, dim: int = 100) -> float:
    """``Φ(-ν√D/2)``: the means are ``ν√D`` apart along ``1/√D``, the boundary is halfway."""
    _check("linear", nu, dim)
    return _norm_cdf(-abs(nu) * math.sqrt(dim) / 2.0)


def bayes_error_xor(nu: float, dim: int = 100) -> float:
    """``2p(1-p)``, ``p = Φ(-ν√(D/2)/2)`` (see the module docstring)."""
    _check("xor", nu, dim)
    p = _norm_cdf(-abs(nu) * math.sqrt(dim / 2.0) / 2.0)
    return 2.0 * p * (1.0 - p)


def bayes_error(kind: str, nu: float, dim: int = 100) -> float:
    """Closed-form Bayes error of the ``kind`` GMM."""
    _check(kind, nu, dim)
    return bayes_error_linear(nu, dim) if kind == "linear" else bayes_error_xor(nu, dim)


def true_posterior(x: Tensor | np.ndarray, kind: str, nu: float) -> Tensor:
    """``P(class 1 | x)`` under the generating model (equal priors); ``x`` is ``(N, D)``.

    Computed in float64 as a sigmoid of the log-likelihood ratio; for xor each class is a
    log-sum-exp over its two components. Returned in ``x``'s float dtype (float32 for ints).
    """
    x = torch.as_tensor(x)
    out_dtype = x.dtype if x.is_floating_point() else torch.float32
    x64 = x.to(torch.float64)
    dim = x64.shape[-1]
    _check(kind, nu, dim)
    # log N(x; m, I) = -|x|²/2 + x·m - |m|²/2 + c; the -|x|²/2 + c term cancels in the ratio.
    if kind == "linear":
        llr = nu * x64.sum(-1) - nu * nu * dim / 2.0
    else:
        h = dim // 2
        s1, s2 = x64[..., :h].sum(-1), x64[..., h:].sum(-1)
        zero = torch.zeros_like(s1)
        log_p0 = torch.logsumexp(torch.stack([zero, nu * (s1 + s2) - nu * nu * dim / 2.0]), 0)
        log_p1 = torch.logsumexp(torch.stack([nu * s2 - nu * nu * h / 2.0, nu * s1 - nu * nu * h / 2.0]), 0)
        llr = log_p1 - log_p0
    return torch.sigmoid(llr).to(out_dtype)


def sample_gmm(
    n: int, kind: str = "linear", *, nu: float = 0.2, dim: int = 100, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``n`` shuffled samples, exactly ``n // 2`` of class 0 (class 1 gets the odd one).

    Mixture components (xor) are drawn as fair coin flips per sample.
    """
    _check(kind, nu, dim)
    n0 = n // 2
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n - n0, dtype=torch.long)])
    mean = torch.zeros(n, dim)
    if kind == "linear":
        mean[y == 1] = nu
    else:
        h = dim // 2
        comp = torch.rand(n, generator=generator) < 0.5
        mean[(y == 0) & comp] = nu  # N(v1, I) component of class 0 (other one is N(0, I))
        mean[(y == 1) & comp, :h] = nu  # [v1_h, 0_h]
        mean[(y == 1) & ~comp, h:] = nu  # [0_h, v1_h]
    x = mean + torch.randn(n, dim, generator=generator)
    perm = torch.randperm(n, generator=generator)
    return x[perm].contiguous(), y[perm]


def _generator(seed: int, stream: int) -> torch.Generator:
    # Separate streams for train/test: changing n_train leaves the test set unchanged.
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0]))
    return g


def make_gmm(
    kind: str = "linear", *, nu: float = 0.2, dim: int = 100, n_train: int = 10_000, n_test: int = 5_000, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of the ``kind`` GMM, float32 inputs, seeded."""
    x_tr, y_tr = sample_gmm(n_train, kind, nu=nu, dim=dim, generator=_generator(seed, 0))
    x_te, y_te = sample_gmm(n_test, kind, nu=nu, dim=dim, generator=_generator(seed, 1))
    return x_tr, y_tr, x_te, y_te


def bayes_error_mc(kind: str, nu: float, dim: int = 100, n: int = 200_000, seed: int = 0) -> float:
    """Monte Carlo Bayes error, ``E[min(p*, 1 - p*)]`` over fresh samples (lower variance than
    counting the Bayes classifier's mistakes; same expectation)."""
    x, _ = sample_gmm(n, kind, nu=nu, dim=dim, generator=_generator(seed, 2))
    p = true_posterior(x.double(), kind, nu)
    return float(torch.minimum(p, 1 - p).mean())
