"""Fréchet distance, paired KL, Inception Score and CLAP score against closed-form values."""
import math

import numpy as np
import pytest
from scipy import linalg

from ualm_tk.scoring.metrics import KeyMismatchError
from ualm_tk.scoring.metrics.distribution import (
    clap_score, frechet_distance, frechet_distance_from_stats, gaussian_stats, inception_score,
    kl_divergence, paired_kl, trace_sqrt_product)


def _random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fd_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 16))
    r = frechet_distance(x, x.copy(), backbone="test-emb", sample_rate=16000)
    assert r.value == pytest.approx(0.0, abs=1e-8)
    assert r.name == "FD" and r.direction == "lower is better"
    assert r.backbone == "test-emb" and r.sample_rate == 16000 and r.num_items == 200


def test_fd_of_known_gaussians_closed_form():
    # diagonal covariances: FD = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fd_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
    ref = np.trace(linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-9)


def test_fd_from_large_samples_approaches_the_gaussian_value():
    rng = np.random.default_rng(2)
    d = 4
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    exact = frechet_distance_from_stats(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, size=50000)
    y = rng.multivariate_normal(mu2, s2, size=50000)
    est = frechet_distance(x, y, "gauss", None).value
    assert est == pytest.approx(exact, rel=0.03)
    assert exact > 0.5  # the case is not trivial


def test_fd_is_biased_upward_for_small_samples_of_one_distribution():
    rng = np.random.default_rng(3)
    small = [frechet_distance(rng.standard_normal((20, 8)), rng.standard_normal((20, 8)), "g", None).value
             for _ in range(5)]
    assert min(small) > 0.5  # same distribution, yet far from 0 at N=20, D=8


def test_fd_rejects_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="dimension mismatch"):
        frechet_distance(x, np.zeros((5, 4)), "g", None)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), x, "g", None)
    bad = np.ones((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in rows \[2\]"):
        gaussian_stats(bad)


def test_kl_identical_is_zero_and_hand_example():
    logits = {"a": np.array([1.0, 2.0, 0.5]), "b": np.array([-1.0, 0.0, 3.0])}
    r = paired_kl(logits, dict(logits), "cls", 16000)
    assert r.value == pytest.approx(0.0, abs=1e-12)
    # hand example with probabilities: p = (0.5, 0.5), q = (0.9, 0.1)
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    ref_gen = paired_kl({"x": q}, {"x": p}, "cls", None, direction="ref||gen", kind="probs")
    gen_ref = paired_kl({"x": q}, {"x": p}, "cls", None, direction="gen||ref", kind="probs")
    assert ref_gen.value == pytest.approx(kl_pq, rel=1e-12)
    assert gen_ref.value == pytest.approx(kl_qp, rel=1e-12)
    assert ref_gen.details["direction"] == "KL(ref || gen)"
    assert gen_ref.details["direction"] == "KL(gen || ref)"


def test_kl_softmax_of_logits_equals_kl_of_probabilities():
    lg, lr = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.0, -0.5])
    pg, pr = np.exp(lg) / np.exp(lg).sum(), np.exp(lr) / np.exp(lr).sum()
    a = paired_kl({"k": lg}, {"k": lr}, "c", None).value
    b = paired_kl({"k": pg}, {"k": pr}, "c", None, kind="probs").value
    assert a == pytest.approx(b, rel=1e-10) and a > 0


def test_kl_multilabel_bernoulli():
    p, q = np.array([0.2, 0.9]), np.array([0.5, 0.6])
    expected = sum(pi * math.log(pi / qi) + (1 - pi) * math.log((1 - pi) / (1 - qi)) for pi, qi in zip(p, q))
    assert kl_divergence(p, q, multilabel=True) == pytest.approx(expected, rel=1e-12)
    r = paired_kl({"k": np.log(q / (1 - q))}, {"k": np.log(p / (1 - p))}, "tagger", None, kind="sigmoid_logits")
    assert r.value == pytest.approx(expected, rel=1e-9) and r.name == "KL_sigmoid"


def test_kl_missing_keys_and_bad_direction():
    with pytest.raises(KeyMismatchError, match=r"missing from generated posteriors: b"):
        paired_kl({"a": np.zeros(3)}, {"a": np.zeros(3), "b": np.zeros(3)}, "c", None)
    with pytest.raises(ValueError, match="direction"):
        paired_kl({"a": np.zeros(3)}, {"a": np.zeros(3)}, "c", None, direction="sym")
    with pytest.raises(ValueError, match="rows must sum to 1"):
        paired_kl({"a": np.array([0.5, 0.6])}, {"a": np.array([0.5, 0.5])}, "c", None, kind="probs")


@pytest.mark.parametrize("c", [2, 5, 17])
def test_inception_score_of_uniform_one_hot_is_num_classes(c):
    probs = np.eye(c)[np.arange(10 * c) % c]  # each split holds every class once
    r = inception_score(probs, "cls", 16000)
    assert r.value == pytest.approx(c, rel=1e-12)
    assert r.details["std"] == pytest.approx(0.0, abs=1e-12) and r.direction == "higher is better"


def test_inception_score_of_constant_prediction_is_one_and_needs_enough_clips():
    probs = np.tile([0.7, 0.2, 0.1], (30, 1))
    assert inception_score(probs, "cls", None).value == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="cannot be cut into 10 splits"):
        inception_score(probs[:9], "cls", None)


def test_clap_score():
    v = np.array([0.6, 0.8, 0.0])
    assert clap_score({"a": v, "b": v}, {"a": v, "b": v * 3}, "clap", 48000).value == pytest.approx(1.0)
    r = clap_score({"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0])},
                   {"a": np.array([0.0, 2.0]), "b": np.array([-1.0, 0.0])}, "clap", 48000)
    assert r.value == pytest.approx(-0.5) and r.details["per_key"] == {"a": 0.0, "b": -1.0}
    with pytest.raises(KeyMismatchError, match="not in text embeddings: c"):
        clap_score({"a": v}, {"a": v, "c": v}, "clap", None)
    with pytest.raises(ValueError, match="key a: zero"):
        clap_score({"a": np.zeros(3)}, {"a": v}, "clap", None)
