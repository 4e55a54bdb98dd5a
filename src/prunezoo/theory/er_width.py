"""Width requirements for random ER networks to contain a target (seed 002, Thm 2.1–2.3).

A depth-L target with widths n_T = [n_0, ..., n_L] (m_{T,l} = n_{T,l-1} n_{T,l} weights) is
contained with probability ≥ 1 − δ in a depth-L+1 ER source whose layer l has q_l n_{T,l} units if,
backwards from q_L = 1,

    q_l ≥ log(L m_{T,l+1} q_{l+1} / δ) / log(1 / (1 − p_{l+1})),

p_{l+1} the density of source layer l+1. Lower bound (Thm 2.3, d = 1): a source narrower than
log(1/(1 − (1 − δ)^{1/d})) / log(1/(1 − p)) cannot contain the target with probability 1 − δ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def er_width_requirements(widths: Sequence[int], densities: Sequence[float], delta: float) -> dict[str, list[float]]:
    """Multipliers ``q`` (q[0] = 1 for the input), source widths ``n_source`` = round(q_l n_{T,l}) as
    plotted in the paper's Fig. 2, and ``n_source_sufficient`` = ceil(q_l n_{T,l}), the width the
    bound guarantees. ``densities[l-1]`` is the ER density of source layer l (l = 1..L).
    """
    L = len(widths) - 1
    if L < 1 or len(densities) != L:
        raise ValueError(
            f"need widths n_0..n_L and one density per layer, got {len(widths)} widths, {len(densities)} densities"
        )
    if not 0 < delta < 1 or any(not 0 < p < 1 for p in densities):
        raise ValueError("delta and densities must be in (0, 1)")
    q = [1.0] * (L + 1)
    for k in range(L - 1, 0, -1):
        m_next = widths[k] * widths[k + 1]
        q[k] = math.log(L * m_next * q[k + 1] / delta) / math.log(1.0 / (1.0 - densities[k]))
    hidden = range(1, L)
    return {
        "q": q,
        "n_source": [widths[0], *(round(q[k] * widths[k]) for k in hidden), widths[L]],
        "n_source_sufficient": [widths[0], *(math.ceil(q[k] * widths[k]) for k in hidden), widths[L]],
    }


def er_width_lower_bound(density: float, delta: float, d: int = 1) -> float:
    return math.log(1.0 / (1.0 - (1.0 - delta) ** (1.0 / d))) / math.log(1.0 / (1.0 - density))


def coverage_probability(
    target_edges: int, copies: int, density: float, trials: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Monte-Carlo check of the union bound behind the theorem for one layer: each of ``target_edges``
    target edges needs at least one of its ``copies`` candidate source edges present (each present
    i.i.d. with ``density``). Returns the estimate, the exact value (1 − (1−p)^q)^m and the bound
    1 − m (1−p)^q."""
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(trials, target_edges, copies, generator=gen) < density
    estimate = float(present.any(-1).all(-1).double().mean())
    miss = (1.0 - density) ** copies
    return {"estimate": estimate, "exact": (1.0 - miss) ** target_edges, "union_bound": 1.0 - target_edges * miss}


def width_curve_figure(widths: Sequence[int], delta: float, sparsities: Sequence[float]):
    """Fig. 2 of seed 002: required first-hidden-layer width of the ER source vs its sparsity
    (same sparsity in every layer), with the Thm 2.3 lower bound × target width."""
    from matplotlib.figure import Figure

    L = len(widths) - 1
    need = [er_width_requirements(widths, [1 - s] * L, delta)["n_source"][1] for s in sparsities]
    bound = [er_width_lower_bound(1 - s, delta) * widths[1] for s in sparsities]
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot(sparsities, need, "o-", label="sufficient width (Thm 2.1/2.2)")
    ax.plot(sparsities, bound, "s--", label="lower bound (Thm 2.3) × target width")
    ax.axhline(widths[1], color="k", lw=0.8, ls=":", label=f"target width {widths[1]}")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of the ER source")
    ax.set_ylabel("first hidden layer width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
