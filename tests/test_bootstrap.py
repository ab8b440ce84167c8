"""Tests for navya.metrics.bootstrap (bootstrap intervals of AP and mAP over images)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from navya.metrics.bootstrap import APInterval, bootstrap_ap, percentile_interval
from navya.metrics.detection import evaluate_detections

PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NAMES = ("a", "b", "c")


def _ordered(b: np.ndarray) -> np.ndarray:
    return np.c_[np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                 np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])]


def detector_data(seed: int, n: int, *, p_hit: float = 0.7, fp: int = 2,
                  score_decimals: int | None = None) -> tuple[list[dict], list[dict]]:
    """``n`` images of 0-3 objects of three classes (10 % difficult); a detector that finds
    each object with probability ``p_hit`` (a box a few pixels off) and adds up to ``fp``
    false positives of random class and place, scoring them lower on average."""
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(n):
        m = int(rng.integers(0, 4))
        xy = rng.uniform(0, 200, (m, 2))
        gt = np.c_[xy, xy + rng.uniform(20, 80, (m, 2))]
        labels = rng.integers(1, len(NAMES) + 1, m)
        targets.append({"boxes": gt, "labels": labels, "difficult": rng.random(m) < 0.1})
        hit = rng.random(m) < p_hit
        boxes = gt[hit] + rng.normal(0, 4, (int(hit.sum()), 4))
        scores = rng.uniform(0.3, 1.0, int(hit.sum()))
        det_labels = labels[hit]
        nf = int(rng.integers(0, fp + 1))
        fxy = rng.uniform(0, 200, (nf, 2))
        boxes = np.r_[boxes, np.c_[fxy, fxy + rng.uniform(20, 80, (nf, 2))]]
        scores = np.r_[scores, rng.uniform(0.0, 0.8, nf)]
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        det_labels = np.r_[det_labels, rng.integers(1, len(NAMES) + 1, nf)]
        predictions.append({"boxes": _ordered(boxes.reshape(-1, 4)), "scores": scores,
                            "labels": det_labels.astype(np.int64)})
    return predictions, targets


# --------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(8, 60),
       p_hit=st.floats(0.2, 0.95), fp=st.integers(0, 5))
def test_interval_contains_the_point_estimate(seed, n, p_hit, fp):
    predictions, targets = detector_data(seed, n, p_hit=p_hit, fp=fp)
    try:
        result = bootstrap_ap(predictions, targets, NAMES, n_resamples=200, seed=seed)
    except ValueError:  # no non-difficult ground truth drawn at all
        return
    point = evaluate_detections(predictions, targets, NAMES)
    for method in result.methods:
        iv = result.mean_ap[method]
        assert iv.point == point.map(method)
        assert iv.low <= iv.point <= iv.high and iv.contains_point
        for name in NAMES:
            iv = result.ap[method][name]
            if point.num_gt[name] == 0:
                assert math.isnan(iv.point) and math.isnan(iv.low) and result.valid[name] == 0
                continue
            assert iv.point == point.ap[method][name]
            assert 0.0 <= iv.low <= iv.point <= iv.high <= 1.0


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40))
def test_identical_images_give_a_zero_width_interval(seed, n):
    predictions, targets = detector_data(seed, 1, fp=3, score_decimals=1)
    if not np.any(~targets[0]["difficult"]):
        targets[0] = {"boxes": [[0.0, 0.0, 50.0, 50.0]], "labels": [1]}
    result = bootstrap_ap(predictions * n, targets * n, NAMES, n_resamples=50, seed=seed)
    for method in result.methods:
        iv = result.mean_ap[method]
        assert iv.low == iv.point == iv.high and iv.width == 0.0
        for name in NAMES:
            iv = result.ap[method][name]
            assert (math.isnan(iv.point) and math.isnan(iv.low)) or iv.low == iv.point == iv.high


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_seeded_results_are_reproducible(seed):
    predictions, targets = detector_data(seed, 25)
    if not any(np.any(~t["difficult"]) for t in targets):
        return
    one = bootstrap_ap(predictions, targets, NAMES, n_resamples=100, seed=seed)
    two = bootstrap_ap(predictions, targets, NAMES, n_resamples=100, seed=seed)
    three = bootstrap_ap(predictions, targets, NAMES, n_resamples=100,
                         seed=np.random.default_rng(seed))
    for method in one.methods:
        np.testing.assert_array_equal(one.ap_samples[method], two.ap_samples[method])
        np.testing.assert_array_equal(one.ap_samples[method], three.ap_samples[method])
        assert one.mean_ap == two.mean_ap == three.mean_ap
    assert one.ap == two.ap and one.seed == seed and three.seed is None


@pytest.mark.slow  # 5-18 s: in the slow set to keep `pytest tests/` under 5 minutes
@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_more_images_narrow_the_interval(seed):
    small = detector_data(seed, 15)
    large = detector_data(seed + 1, 240)
    if not any(np.any(~t["difficult"]) for t in small[1]):
        return
    w_small = bootstrap_ap(*small, NAMES, n_resamples=200, seed=0).mean_ap["all-point"].width
    w_large = bootstrap_ap(*large, NAMES, n_resamples=200, seed=0).mean_ap["all-point"].width
    assert w_large < w_small


def test_more_copies_of_the_same_images_narrow_the_interval():
    predictions, targets = detector_data(3, 20)
    widths = [bootstrap_ap(predictions * k, targets * k, NAMES, n_resamples=300,
                           seed=1).mean_ap["all-point"].width for k in (1, 4, 16)]
    assert widths[0] > widths[1] > widths[2] > 0


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("decimals", [None, 1])  # distinct scores; many tied scores
def test_each_resample_equals_evaluate_detections_on_the_drawn_images(decimals):
    predictions, targets = detector_data(11, 30, fp=4, score_decimals=decimals)
    result = bootstrap_ap(predictions, targets, NAMES, n_resamples=20, seed=5,
                          methods=("all-point", "voc07", "101-point"))
    rng = np.random.default_rng(5)
    for b in range(20):
        drawn = np.sort(rng.integers(0, len(targets), size=len(targets)))
        ev = evaluate_detections([predictions[i] for i in drawn], [targets[i] for i in drawn],
                                 NAMES, methods=("all-point", "voc07", "101-point"))
        for method in result.methods:
            expected = np.array([ev.ap[method][name] for name in NAMES])
            np.testing.assert_array_equal(result.ap_samples[method][b], expected)
            assert result.map_samples[method][b] == pytest.approx(ev.map(method), abs=1e-15)


def test_points_equal_evaluate_detections_and_intervals_are_percentiles():
    predictions, targets = detector_data(2, 40)
    result = bootstrap_ap(predictions, targets, NAMES, n_resamples=150, seed=9,
                          confidence=0.9, iou_threshold=0.6)
    ev = evaluate_detections(predictions, targets, NAMES, iou_threshold=0.6)
    assert result.n_images == 40 and result.n_resamples == 150 and result.confidence == 0.9
    for method in ("all-point", "voc07"):
        samples = result.map_samples[method]
        low, high = np.quantile(samples[~np.isnan(samples)], [0.05, 0.95])
        assert result.mean_ap[method].point == ev.map(method)
        assert result.mean_ap[method][1:] == pytest.approx((low, high), rel=1e-12)
        point, lo, hi = result.ap[method]["a"]  # unpacks as a triple
        assert point == ev.ap[method]["a"] and lo <= hi


def test_torch_inputs_and_a_class_missing_from_some_resamples():
    predictions = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([1])} for _ in range(30)]
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1]),
                "difficult": torch.tensor([False])} for _ in range(30)]
    # class b: one image of 30, found with a low score behind a false positive of b
    predictions[0] = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0],
                                             [20.0, 20.0, 30.0, 30.0]]),
                      "scores": torch.tensor([0.9, 0.8, 0.1]), "labels": torch.tensor([1, 2, 2])}
    targets[0] = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
                  "labels": torch.tensor([1, 2])}
    result = bootstrap_ap(predictions, targets, NAMES, n_resamples=400, seed=0)
    assert result.ap["all-point"]["a"] == APInterval(1.0, 1.0, 1.0)
    assert result.ap["all-point"]["b"].point == 0.5
    # P(image 0 never drawn) = (29/30)^30, about 36 %
    assert 0.5 * 400 < result.valid["b"] < 0.8 * 400
    assert result.valid["a"] == 400 and result.valid["c"] == 0
    assert all(math.isnan(v) for v in result.ap["voc07"]["c"])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ap"]["all-point"]["c"] == {"point": None, "low": None, "high": None}
    assert data["map"]["all-point"]["point"] == 0.75 and data["valid"]["b"] == result.valid["b"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"confidence": 1.0}, "confidence"),
    ({"confidence": 0.0}, "confidence"),
    ({"n_resamples": 0}, "n_resamples"),
    ({"n_resamples": 2.5}, "n_resamples"),
    ({"methods": ()}, "at least one"),
    ({"methods": ("bogus",)}, "unknown AP method"),
])
def test_bad_arguments_are_refused(kwargs, message):
    predictions, targets = detector_data(0, 5)
    targets[0] = {"boxes": [[0.0, 0.0, 5.0, 5.0]], "labels": [1]}
    with pytest.raises(ValueError, match=message):
        bootstrap_ap(predictions, targets, NAMES, **kwargs)


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one image"):
        bootstrap_ap([], [], NAMES)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ap([{"boxes": [], "scores": [], "labels": []}], [], NAMES)
    empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, dtype=np.int64)}
    det = {"boxes": [[0.0, 0.0, 5.0, 5.0]], "scores": [0.5], "labels": [1]}
    with pytest.raises(ValueError, match="no non-difficult ground truth"):
        bootstrap_ap([det, det], [empty, empty], NAMES)
    only_difficult = {"boxes": [[0.0, 0.0, 5.0, 5.0]], "labels": [1], "difficult": [True]}
    with pytest.raises(ValueError, match="no non-difficult ground truth"):
        bootstrap_ap([det], [only_difficult], NAMES)
    with pytest.raises(ValueError, match="one mapping per image"):
        bootstrap_ap(det, only_difficult, NAMES)  # type: ignore[arg-type]


def test_percentile_interval():
    samples = np.r_[np.arange(101, dtype=float), np.nan]
    assert percentile_interval(samples, 0.9) == pytest.approx((5.0, 95.0), abs=1e-12)
    low, high = percentile_interval(np.arange(1000.0))
    assert (low, high) == pytest.approx(np.quantile(np.arange(1000.0), [0.025, 0.975]), rel=1e-12)
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(samples, 1.5)
