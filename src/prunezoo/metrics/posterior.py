"""How far a model's predictive probability is from the true posterior, on fresh GMM samples."""

from __future__ import annotations

import torch
from torch import nn

from prunezoo.data.gmm import sample_gmm, true_posterior


@torch.no_grad()
def posterior_gap(
    model: nn.Module, kind: str = "linear", *, nu: float = 0.2, dim: int = 100, n: int = 10_000, seed: int = 12345
) -> dict[str, float]:
    """Compare p_model(class 1 | x) with the closed-form p*(class 1 | x) on ``n`` fresh samples.

    Returns mean |p − p*|, the mean signed over-confidence E[|p − ½| − |p* − ½|] (> 0: the model
    is more confident than the Bayes posterior) and the model's and Bayes classifier's error.
    """
    x, y = sample_gmm(n, kind, nu=nu, dim=dim, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    p = model(x).softmax(1)[:, 1].double()
    model.train(was_training)
    p_star = true_posterior(x.double(), kind, nu)
    return {
        "mean_abs_gap": float((p - p_star).abs().mean()),
        "overconfidence": float(((p - 0.5).abs() - (p_star - 0.5).abs()).mean()),
        "model_error": float(((p > 0.5).long() != y).double().mean()),
        "bayes_error": float(((p_star > 0.5).long() != y).double().mean()),
    }
