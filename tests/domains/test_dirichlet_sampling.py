"""Reverse-time Dirichlet diffusion sampling (DDSM) against an exact answer: data on the one-hot vertices with
weights ``w``, the exact marginal score of the sticks (a mixture over the vertices of products over sticks of the
Jacobi transition density), chi-square test of the sampled categories; conditional sampling; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from sdekit.domains import (
    JacobiReverseSDE,
    dirichlet_reverse_sample,
    jacobi_log_density,
    jacobi_score,
    one_hot_sticks,
    stick_parameters,
)

torch.set_num_threads(1)

K = 3
W = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)


def exact_score(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``d/dv log sum_k w_k prod_j p_t(v_j | onehot_k sticks)`` per entry of ``v: (..., K - 1)``; the series
    order follows ``t`` (first dropped term ``~ exp(-order^2 t / 2)``)."""
    a, b = stick_parameters(K)
    v0 = one_hot_sticks(torch.arange(K), K)                                  # (K components, K - 1 sticks)
    order = min(200, math.ceil(math.sqrt(300 / float(t))) + 10)
    vv = v.unsqueeze(-2)
    log_p = jacobi_log_density(vv, v0, t, a, b, order=order)                 # (..., K, K - 1)
    score = jacobi_score(vv, v0, t, a, b, order=order)
    r = torch.softmax(torch.log(W) + log_p.sum(-1), dim=-1).unsqueeze(-1)   # posterior over components
    return (r * torch.where(r > 0, score, torch.zeros_like(score))).sum(-2)


def test_reverse_sampler_recovers_the_categorical_weights():
    n = 4000
    x = dirichlet_reverse_sample(exact_score, K, (n,), t_max=10.0, t_min=0.01, steps=50, seed=0)
    assert x.shape == (n, K)
    assert bool((x > 0).all()) and torch.allclose(x.sum(-1), torch.ones(n, dtype=x.dtype), atol=1e-12)
    counts = torch.bincount(x.argmax(-1), minlength=K).numpy()
    chi2 = stats.chisquare(counts, n * W.numpy())
    assert chi2.pvalue > 1e-3, (counts / n, chi2)
    assert float(x.max(-1).values.min()) > 0.9                              # every sample near a vertex


def test_reverse_sampler_without_the_divergence_term_fails():
    """Dropping ``(g^2)' = s (1 - 2 v)`` from the reverse drift (the constant-``g`` formula) biases the
    categories far beyond the test's tolerance: the test has power against that mistake."""
    def wrong(v, t):
        return exact_score(v, t) - (1 - 2 * v) / (v * (1 - v))
    n = 2000
    x = dirichlet_reverse_sample(wrong, K, (n,), steps=30, seed=1)
    counts = torch.bincount(x.argmax(-1), minlength=K).numpy()
    assert stats.chisquare(counts, n * W.numpy()).pvalue < 1e-10


def test_conditional_sampling_keeps_known_entries_and_samples_the_rest():
    """Two independent cells with the same weights (the joint score factorises per cell): cell 0 fixed to the
    last category, cell 1 must still follow ``w``."""
    n = 1000
    known = torch.full((n, 2), -1, dtype=torch.long)
    known[:, 0] = K - 1
    x = dirichlet_reverse_sample(exact_score, K, (n, 2), steps=50, seed=2, known=known)
    assert bool((x[:, 0].argmax(-1) == K - 1).all())
    assert float(x[:, 0, K - 1].min()) > 1 - 1e-5
    counts = torch.bincount(x[:, 1].argmax(-1), minlength=K).numpy()
    assert stats.chisquare(counts, n * W.numpy()).pvalue > 1e-3


def test_bad_input_is_refused():
    def zero(v, t):
        return torch.zeros_like(v)
    with pytest.raises(ValueError, match="score"):
        dirichlet_reverse_sample(lambda v, t: torch.zeros(v.shape[0], K), K, (4,), steps=2, seed=0)
    for kwargs, name in [({"t_min": 0.0}, "t_min"), ({"t_min": 2.0, "t_max": 1.0}, "t_max"),
                         ({"eps": 0.5}, "eps"), ({"eps": 0.0}, "eps"), ({"steps": 0}, "steps")]:
        with pytest.raises(ValueError, match=name):
            dirichlet_reverse_sample(zero, K, (4,), seed=0, **kwargs)
    with pytest.raises(ValueError, match="known"):
        dirichlet_reverse_sample(zero, K, (4,), known=torch.full((4,), K), seed=0)
    with pytest.raises(ValueError, match="K"):
        dirichlet_reverse_sample(zero, 1, (4,), seed=0)
    with pytest.raises(ValueError, match="eps"):
        JacobiReverseSDE(zero, K, eps=-1e-3)
    with pytest.raises(ValueError, match="category"):
        one_hot_sticks(torch.tensor([3]), K)
