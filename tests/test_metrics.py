"""pipeline/metrics.py: the one place outputs are compared (runtime, shadow monitor, frame checks,
bench, device verifier, calibration budget)."""
import numpy as np
import pytest

from inception_deploy.pipeline import metrics


def _logits(n=64, c=200, scale=4.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c)) * scale).astype(np.float32)


def test_softmax_is_stable_and_matches_log_softmax_for_rows_and_batches():
    x = _logits(scale=3000.0)            # exp() of these overflows without the shift
    p = metrics.softmax(x)
    assert p.dtype == np.float64 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p, np.exp(metrics.log_softmax(x)), rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(metrics.softmax(x[5]), p[5])      # one row, as the runtime hands it
    assert x.dtype == np.float32 and np.isfinite(x).all()           # the input is left alone


def test_runtime_and_metrics_share_one_softmax():
    from inception_deploy import runtime
    from inception_deploy.runtime import classifier

    assert runtime.softmax is metrics.softmax and classifier.softmax is metrics.softmax


def test_kl_is_zero_on_itself_and_positive_on_a_change():
    x = _logits()
    np.testing.assert_allclose(metrics.kl_per_row(x, x), 0.0, atol=1e-12)
    kl = metrics.kl_per_row(x, x + _logits(seed=1) * 0.1)
    assert (kl > 0).all() and np.isfinite(kl).all()


def test_topk_overlap_counts_shared_classes():
    x = _logits()
    y = x + _logits(seed=2)
    expected = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5.0 for a, b in zip(x, y)]
    np.testing.assert_array_equal(metrics.topk_overlap(x, y, 5), expected)
    assert (metrics.topk_overlap(x, x, 5) == 1.0).all()
    assert (metrics.topk_overlap(x, -x, 5) == 0.0).all()
    np.testing.assert_array_equal(metrics.top1_agrees(x, y), x.argmax(1) == y.argmax(1))


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (1, 9, 2 * 11 / 1024), (5, 5, 1.0), (3, 0, 0.25)])
def test_mcnemar_exact_values(b, c, p):
    assert metrics.mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)
    assert metrics.mcnemar_exact(c, b) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_past_float_range():
    assert 0.0 <= metrics.mcnemar_exact(600, 700) < 0.01         # 2 ** 1300 is no float


def test_compare_counts_a_known_drop():
    labels = np.arange(10) % 5
    base = np.eye(5, dtype=np.float32)[labels] * 10.0                 # always right
    cand = base.copy()
    cand[[0, 5, 1], :] = np.eye(5, dtype=np.float32)[[4, 4, 4]] * 10.0  # wrong on 3 images of classes 0, 0, 1
    d = metrics.compare(cand, base, labels, label_names=["a", "b", "c", "d", "e"])
    assert d.images == 10 and d.top1_drop == pytest.approx(30.0) and d.top1_agreement == pytest.approx(0.7)
    assert (d.only_baseline_correct, d.only_candidate_correct) == (3, 0)
    assert d.mcnemar_p == pytest.approx(0.25) and not d.significant
    assert [w["label"] for w in d.worst_classes] == ["a", "b"] and d.worst_classes[0]["top1_drop"] == pytest.approx(100.0)
    lo, hi = d.top1_drop_ci95
    assert 0.0 <= lo <= 30.0 <= hi
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.compare(cand[:, :4], base, labels)
