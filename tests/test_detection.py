"""Tests for navya.metrics.detection (Pascal VOC AP / mAP)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from navya.metrics.detection import (
    AP_METHODS,
    DetectionEvaluation,
    average_precision,
    box_iou,
    evaluate_detections,
    match_detections,
)

PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def pred(boxes, scores, labels):
    return {
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float64),
        "labels": np.asarray(labels, dtype=np.int64),
    }


def target(boxes, labels, difficult=None):
    t = {
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
    }
    if difficult is not None:
        t["difficult"] = np.asarray(difficult, dtype=bool)
    return t


# Three ground truths (A, B in image 0, C in image 1) and one far-away miss M.
A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 0.0, 30.0, 10.0]
C = [5.0, 5.0, 25.0, 15.0]
MISS = [50.0, 50.0, 60.0, 60.0]


def tp_fp_sequence_case():
    """Ranked by score: A (TP), miss (FP), C (TP), A again (FP, duplicate), B (TP)."""
    predictions = [
        pred([A, MISS, A, B], [0.9, 0.8, 0.6, 0.5], [1, 1, 1, 1]),
        pred([C], [0.7], [1]),
    ]
    targets = [target([A, B], [1, 1]), target([C], [1])]
    return predictions, targets


# --------------------------------------------------------------------------- box_iou


def test_box_iou_known_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [10, 10, 11, 11]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (3, 3)
    # [0,0,2,2] vs [1,1,3,3]: intersection 1x1 = 1, union 4 + 4 - 1 = 7.
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[0, 1] == 1.0  # identical boxes
    assert iou[0, 2] == 0.0  # touching edges only: intersection has zero area
    # [0,0,1,1] inside [0,0,2,2]: 1 / 4 (continuous coordinates, no +1).
    assert iou[1, 1] == pytest.approx(0.25)
    assert np.all(iou[2] == 0.0)  # disjoint


def test_box_iou_empty_and_degenerate():
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert box_iou(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    point = np.array([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(point, point)[0, 0] == 0.0  # zero union -> 0, not NaN


def test_box_iou_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(2, 30, 2))
    wh = rng.uniform(1, 30, size=(2, 30, 2))
    a, b = (np.concatenate([xy[i], xy[i] + wh[i]], axis=1) for i in range(2))
    expected = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- hand-computed AP


def test_hand_computed_tp_fp_sequence():
    predictions, targets = tp_fp_sequence_case()
    ev = evaluate_detections(predictions, targets, ["obj"], methods=AP_METHODS)
    # Ranking TP FP TP FP TP with 3 GT:
    #   cumTP     1    1    2    2    3
    #   cumFP     0    1    1    2    2
    #   recall   1/3  1/3  2/3  2/3   1
    #   precision 1   1/2  2/3  1/2  3/5
    #   envelope  1   2/3  2/3  3/5  3/5
    # all-point: recall steps of 1/3 at precisions 1, 2/3, 3/5:
    #   1/3 * (1 + 2/3 + 3/5) = 1/3 + 2/9 + 1/5 = (15 + 10 + 9) / 45 = 34/45
    assert ev.ap["all-point"]["obj"] == pytest.approx(34 / 45, abs=1e-12)
    # 11-point: t = 0, .1, .2, .3 -> 1 (4 times); t = .4, .5, .6 -> max(2/3, 1/2, 3/5) = 2/3
    #   (3 times); t = .7, .8, .9, 1 -> 3/5 (4 times): (4 + 2 + 2.4) / 11 = 8.4 / 11 = 42/55
    assert ev.ap["voc07"]["obj"] == pytest.approx(42 / 55, abs=1e-12)
    # 101-point: r = 0.00..0.33 (34 thresholds) -> 1, r = 0.34..0.66 (33) -> 2/3,
    #   r = 0.67..1.00 (34) -> 3/5: (34 + 22 + 20.4) / 101 = 76.4 / 101
    assert ev.ap["101-point"]["obj"] == pytest.approx(76.4 / 101, abs=1e-12)
    assert ev.num_gt == {"obj": 3}
    assert ev.num_detections == {"obj": 5}
    assert ev.recall == {"obj": 1.0}
    assert ev.map() == ev.ap["all-point"]["obj"]
    assert ev.map("voc07") == ev.ap["voc07"]["obj"]


def test_hand_computed_precision_envelope():
    # Ranking TP FP FP TP TP with 3 GT (A, B, C in one image; two misses in between):
    #   recall    1/3  1/3  1/3  2/3   1
    #   precision  1   1/2  1/3  2/4  3/5
    #   envelope   1   3/5  3/5  3/5  3/5   (precision rises again at the end)
    # all-point: 1/3 * (1 + 3/5 + 3/5) = 2.2 / 3 = 11/15 (without the envelope: 0.7)
    # 11-point: t = 0..0.3 -> 1 (4 times), t = 0.4..1 -> 3/5 (7 times): (4 + 4.2) / 11 = 8.2/11
    # 101-point: r = 0.00..0.33 (34) -> 1, r = 0.34..1.00 (67) -> 3/5: (34 + 40.2) / 101
    miss2 = [70.0, 70.0, 80.0, 80.0]
    predictions = [pred([A, MISS, miss2, B, C], [0.9, 0.8, 0.7, 0.6, 0.5], [1] * 5)]
    targets = [target([A, B, C], [1, 1, 1])]
    ev = evaluate_detections(predictions, targets, ["obj"], methods=AP_METHODS)
    assert ev.ap["all-point"]["obj"] == pytest.approx(11 / 15, abs=1e-12)
    assert ev.ap["voc07"]["obj"] == pytest.approx(8.2 / 11, abs=1e-12)
    assert ev.ap["101-point"]["obj"] == pytest.approx(74.2 / 101, abs=1e-12)


def test_score_ties_keep_image_then_detection_order():
    # 40 images with one detection each, score 0.5 in even images and 0.25 in odd ones
    # (a pattern that an unstable sort does scramble); only image 38 has a GT, and its
    # detection is the TP. Stable ranking keeps image order within a score, so the TP is
    # 20th of the 0.5s: precision 1/20 at recall 1 -> all-point AP 1/20.
    n = 40
    predictions = [pred([A], [0.5 if i % 2 == 0 else 0.25], [1]) for i in range(n)]
    targets = [target([A], [1]) if i == 38 else target([], []) for i in range(n)]
    m = match_detections(predictions, targets, ["obj"])["obj"]
    np.testing.assert_array_equal(m.image_index, [*range(0, n, 2), *range(1, n, 2)])
    ev = evaluate_detections(predictions, targets, ["obj"])
    assert ev.ap["all-point"]["obj"] == pytest.approx(1 / 20)


def test_match_detections_reports_ranking():
    predictions, targets = tp_fp_sequence_case()
    m = match_detections(predictions, targets, ["obj"])["obj"]
    np.testing.assert_array_equal(m.scores, [0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(m.true_positive, [True, False, True, False, True])
    np.testing.assert_array_equal(m.image_index, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(m.detection_index, [0, 1, 0, 2, 3])
    recall, precision = m.precision_recall()
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])


def test_duplicate_detection_is_false_positive():
    t = [target([A], [1])]
    single = evaluate_detections([pred([A], [0.9], [1])], t, ["obj"])
    dup = evaluate_detections([pred([A, A], [0.9, 0.8], [1, 1])], t, ["obj"])
    assert single.ap["all-point"]["obj"] == 1.0
    # The duplicate comes after recall already reached 1: TP FP -> AP still 1.
    assert dup.ap["all-point"]["obj"] == 1.0
    m = match_detections([pred([A, A], [0.9, 0.8], [1, 1])], t, ["obj"])["obj"]
    np.testing.assert_array_equal(m.true_positive, [True, False])
    # With a second GT found later, the duplicate's FP costs precision:
    # TP FP TP, 2 GT -> recall 1/2 1/2 1, precision 1 1/2 2/3 -> 1/2 * 1 + 1/2 * 2/3 = 5/6.
    ev = evaluate_detections(
        [pred([A, A, B], [0.9, 0.8, 0.7], [1, 1, 1])], [target([A, B], [1, 1])], ["obj"]
    )
    assert ev.ap["all-point"]["obj"] == pytest.approx(5 / 6)


def test_best_iou_gt_is_taken_even_if_already_matched():
    # VOC devkit rule: a detection goes to its highest-IoU GT even if that one is taken,
    # and then is a FP, although it overlaps another free GT by >= 0.5.
    g1 = [0.0, 0.0, 10.0, 10.0]
    g2 = [1.0, 0.0, 11.0, 10.0]  # IoU(g1, g2) = 90 / 110
    d2 = [0.2, 0.0, 10.2, 10.0]  # IoU with g1 = 9.8/10.2 > IoU with g2 = 9.2/10.8 >= 0.5
    m = match_detections([pred([g1, d2], [0.9, 0.8], [1, 1])], [target([g1, g2], [1, 1])], ["obj"])[
        "obj"
    ]
    np.testing.assert_array_equal(m.true_positive, [True, False])


def test_detection_on_difficult_gt_is_ignored():
    # GT: N (normal) and D (difficult). Ranked: on D (ignored), miss (FP), on D again
    # (ignored, not a duplicate FP), on N (TP). After dropping ignored: FP TP with 1 GT:
    # recall 0, 1; precision 0, 1/2 -> all-point AP = 1 * 1/2 = 1/2.
    # (Counting D as an FP would give 1/3; as a normal GT, 5/6.)
    N, D = A, B
    predictions = [pred([D, MISS, D, N], [0.9, 0.8, 0.75, 0.7], [1, 1, 1, 1])]
    targets = [target([N, D], [1, 1], difficult=[False, True])]
    ev = evaluate_detections(predictions, targets, ["obj"])
    assert ev.ap["all-point"]["obj"] == pytest.approx(0.5)
    assert ev.num_gt == {"obj": 1}
    assert ev.num_detections == {"obj": 4}
    m = match_detections(predictions, targets, ["obj"])["obj"]
    assert m.num_ignored == 2
    np.testing.assert_array_equal(m.scores, [0.8, 0.7])
    # Missing the difficult GT costs nothing.
    ev = evaluate_detections([pred([N], [0.5], [1])], targets, ["obj"])
    assert ev.ap["all-point"]["obj"] == 1.0


def test_class_without_gt_is_nan_and_excluded_from_map():
    # Class "a": TP -> AP 1. Class "b": detections only -> NaN. Class "c": only a
    # difficult GT -> NaN. Class "d": GT but no detection -> AP 0, counted in mAP.
    predictions = [pred([A, B, C], [0.9, 0.8, 0.7], [1, 2, 3])]
    targets = [target([A, C, MISS], [1, 3, 4], difficult=[False, True, False])]
    ev = evaluate_detections(predictions, targets, ["a", "b", "c", "d"], methods=AP_METHODS)
    for method in AP_METHODS:
        assert ev.ap[method]["a"] == 1.0
        assert math.isnan(ev.ap[method]["b"])
        assert math.isnan(ev.ap[method]["c"])
        assert ev.ap[method]["d"] == 0.0
        assert ev.map(method) == pytest.approx(0.5)  # mean of a = 1 and d = 0
    assert ev.num_gt == {"a": 1, "b": 0, "c": 0, "d": 1}
    assert ev.num_detections == {"a": 1, "b": 1, "c": 1, "d": 0}
    assert math.isnan(ev.recall["b"]) and ev.recall["d"] == 0.0


def test_no_ground_truth_at_all_gives_nan_map():
    ev = evaluate_detections([pred([A], [0.9], [1])], [target([], [])], ["a"])
    assert math.isnan(ev.map())
    ev = evaluate_detections([], [], ["a"])
    assert math.isnan(ev.map()) and ev.num_gt == {"a": 0}


def test_image_without_predictions():
    # Image 1 has a GT but no predictions (empty [0, 4] arrays, and also torch.empty(0)).
    # Image 0: one TP out of 2 GT -> recall 1/2 at precision 1 -> all-point AP 1/2,
    # 11-point: t = 0..0.5 -> 1 (6 of 11) -> 6/11.
    for empty in (
        pred(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)),
        {"boxes": torch.empty(0), "scores": torch.empty(0), "labels": torch.empty(0)},
    ):
        predictions = [pred([A], [0.9], [1]), empty]
        targets = [target([A], [1]), target([C], [1])]
        ev = evaluate_detections(predictions, targets, ["obj"])
        assert ev.ap["all-point"]["obj"] == pytest.approx(0.5)
        assert ev.ap["voc07"]["obj"] == pytest.approx(6 / 11)
        assert ev.recall["obj"] == 0.5
    # An image with neither predictions nor GT changes nothing.
    ev2 = evaluate_detections(
        [pred([A], [0.9], [1]), pred([], [], [])], [target([A], [1]), target([], [])], ["obj"]
    )
    assert ev2.ap["all-point"]["obj"] == 1.0


def test_iou_threshold_is_inclusive_and_configurable():
    half = [0.0, 0.0, 1.0, 1.0]
    gt = [0.0, 0.0, 2.0, 1.0]  # IoU(half, gt) = 1 / 2 exactly
    args = ([pred([half], [0.9], [1])], [target([gt], [1])], ["obj"])
    assert evaluate_detections(*args).ap["all-point"]["obj"] == 1.0
    assert evaluate_detections(*args, iou_threshold=0.75).ap["all-point"]["obj"] == 0.0
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_detections(*args, iou_threshold=0.0)


def test_torch_and_numpy_inputs_agree():
    predictions, targets = tp_fp_sequence_case()
    as_torch = lambda d: {k: torch.as_tensor(v) for k, v in d.items()}  # noqa: E731
    ev_np = evaluate_detections(predictions, targets, ["obj"])
    ev_t = evaluate_detections(
        [as_torch(p) for p in predictions], [as_torch(t) for t in targets], ["obj"]
    )
    assert ev_t == ev_np
    # float32 boxes and scores from a model are fine too.
    preds32 = [
        {
            k: (torch.as_tensor(v).float() if k != "labels" else torch.as_tensor(v))
            for k, v in p.items()
        }
        for p in predictions
    ]
    assert evaluate_detections(preds32, targets, ["obj"]).ap == ev_np.ap


def test_average_precision_direct():
    assert average_precision(np.array([]), np.array([]), "all-point") == 0.0
    r, p = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(r, p, "all-point") == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point thresholds are k/10 exactly: recall exactly 0.3 (= 3/10) reaches t = 0.3
    # (the devkit's np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004 and would not).
    assert average_precision(np.array([3 / 10]), np.array([1.0]), "voc07") == pytest.approx(4 / 11)
    assert average_precision(np.array([7 / 10]), np.array([1.0]), "voc07") == pytest.approx(8 / 11)
    with pytest.raises(ValueError, match="unknown AP method"):
        average_precision(r, p, "coco")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-decreasing"):
        average_precision(r[::-1], p, "all-point")


def test_evaluation_helpers_round_trip():
    predictions, targets = tp_fp_sequence_case()
    targets = [*targets]
    ev = evaluate_detections(predictions, targets, ["obj", "none"], methods=AP_METHODS)
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["ap"]["all-point"]["none"] is None
    back = DetectionEvaluation.from_dict(data)
    assert back.to_dict() == ev.to_dict()
    rows = ev.per_class_rows()
    assert [r["class"] for r in rows] == ["obj", "none"]
    assert rows[0]["ap_voc07"] == ev.ap["voc07"]["obj"] and rows[0]["num_gt"] == 3
    assert ev.methods == AP_METHODS
    with pytest.raises(ValueError, match="not computed"):
        evaluate_detections(predictions, targets, ["obj", "none"], methods=("voc07",)).map()


# --------------------------------------------------------------------------- bad input


def test_bad_input_mismatched_lengths():
    predictions, targets = tp_fp_sequence_case()
    with pytest.raises(ValueError, match=r"same length.*2 predictions and 1 targets"):
        evaluate_detections(predictions, targets[:1], ["obj"])


@pytest.mark.parametrize(
    ("which", "entry", "message"),
    [
        ("pred", pred([A], [0.9], [1]) | {"boxes": np.zeros((1, 3))}, r"shape \[N, 4\]"),
        ("target", target([A], [1]) | {"boxes": np.zeros(4)}, r"shape \[N, 4\]"),
        ("pred", pred([A], [0.9], [2]), r"label 2 is out of range.*1\.\.1"),
        ("pred", pred([A], [0.9], [0]), r"label 0 is out of range"),
        ("target", target([A], [5]), r"label 5 is out of range"),
        ("pred", pred([A], [0.9, 0.8], [1]), r"'scores' must have shape \[1\]"),
        ("target", target([A], [1, 1]), r"'labels' must have shape \[1\]"),
        ("target", target([A], [1], difficult=[True, False]), r"'difficult' must have shape"),
        ("pred", pred([[0, 0, 10, -5]], [0.9], [1]), r"x2 >= x1 and y2 >= y1"),
        ("pred", pred([A], [math.nan], [1]), r"NaN"),
        ("pred", pred([A], [0.9], [1]) | {"labels": np.array([1.5])}, r"integer"),
        ("pred", {"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}, r"no 'scores'"),
    ],
)
def test_bad_input_names_image_index(which, entry, message):
    predictions, targets = tp_fp_sequence_case()
    if which == "pred":
        predictions[1] = entry
    else:
        targets[1] = entry
    with pytest.raises(ValueError, match=r"^image 1: ") as info:
        evaluate_detections(predictions, targets, ["obj"])
    assert info.match(message)


def test_bad_arguments():
    predictions, targets = tp_fp_sequence_case()
    with pytest.raises(ValueError, match="unknown AP method"):
        evaluate_detections(predictions, targets, ["obj"], methods=("voc12",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        evaluate_detections(predictions, targets, ["obj", "obj"])


# --------------------------------------------------------------------------- properties

coord = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False)
size = st.floats(1.0, 40.0, allow_nan=False, allow_infinity=False)
boxes_st = st.builds(lambda x, y, w, h: (x, y, x + w, y + h), coord, coord, size, size)


@st.composite
def datasets(draw, *, with_difficult=True, distinct_scores=True):
    """Random images: GT boxes (distinct per image), jittered/duplicated hits and random boxes.

    Returns (predictions, targets, class_names) as numpy dicts. Scores are distinct
    when ``distinct_scores`` (ranks of a random permutation, in (0, 1)).
    """
    num_classes = draw(st.integers(1, 3))
    num_images = draw(st.integers(1, 5))
    label_st = st.integers(1, num_classes)
    targets, raw = [], []
    for _ in range(num_images):
        gts = draw(st.lists(st.tuples(boxes_st, label_st), max_size=4, unique_by=lambda g: g[0]))
        # About one GT in five is difficult.
        difficult = [with_difficult and draw(st.integers(0, 4)) == 0 for _ in gts]
        dets = []
        for box, label in gts:
            for _ in range(draw(st.integers(0, 2))):  # 0, 1 or 2 (duplicate) hits
                w, h = box[2] - box[0], box[3] - box[1]
                j = draw(st.tuples(*[st.floats(-0.3, 0.3)] * 4))
                jittered = (
                    box[0] + j[0] * w,
                    box[1] + j[1] * h,
                    box[2] + j[2] * w,
                    box[3] + j[3] * h,
                )
                dets.append((jittered, draw(st.sampled_from([label, *range(1, num_classes + 1)]))))
        dets += draw(st.lists(st.tuples(boxes_st, label_st), max_size=3))
        dets = draw(st.permutations(dets))
        targets.append(target([g[0] for g in gts], [g[1] for g in gts], difficult))
        raw.append(dets)
    total = sum(len(d) for d in raw)
    if distinct_scores:
        ranks = draw(st.permutations(range(total)))
        all_scores = [(r + 1) / (total + 1) for r in ranks]
    else:
        all_scores = draw(
            st.lists(st.sampled_from([0.25, 0.5, 0.75]), min_size=total, max_size=total)
        )
    predictions, k = [], 0
    for dets in raw:
        predictions.append(
            pred([d[0] for d in dets], all_scores[k : k + len(dets)], [d[1] for d in dets])
        )
        k += len(dets)
    return predictions, targets, tuple(f"class{c}" for c in range(1, num_classes + 1))


def assert_ap_equal(ev1, ev2):
    for method in ev1.ap:
        for name in ev1.class_names:
            a, b = ev1.ap[method][name], ev2.ap[method][name]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def assert_ap_not_raised(before, after):
    for method in before.ap:
        for name in before.class_names:
            a, b = before.ap[method][name], after.ap[method][name]
            if math.isnan(a):
                assert math.isnan(b)
            else:
                assert b <= a + 1e-12, (method, name, a, b)


@PROPERTY_SETTINGS
@given(data=datasets(distinct_scores=False), scores_seed=st.data())
def test_perfect_predictions_give_ap_one(data, scores_seed):
    _, targets, names = data
    # Predict every GT exactly (difficult ones too: those are ignored), any scores, ties included.
    predictions = []
    for t in targets:
        n = len(t["boxes"])
        scores = scores_seed.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
        predictions.append(pred(t["boxes"], scores, t["labels"]))
    ev = evaluate_detections(predictions, targets, names, methods=AP_METHODS)
    for method in AP_METHODS:
        for name in names:
            if ev.num_gt[name] > 0:
                assert ev.ap[method][name] == pytest.approx(1.0, abs=1e-12)
            else:
                assert math.isnan(ev.ap[method][name])
        if any(ev.num_gt.values()):
            assert ev.map(method) == pytest.approx(1.0, abs=1e-12)
        else:
            assert math.isnan(ev.map(method))


@PROPERTY_SETTINGS
@given(data=datasets(), perm_data=st.data())
def test_ap_does_not_depend_on_image_order(data, perm_data):
    predictions, targets, names = data
    perm = perm_data.draw(st.permutations(range(len(predictions))))
    ev = evaluate_detections(predictions, targets, names, methods=AP_METHODS)
    ev_perm = evaluate_detections(
        [predictions[i] for i in perm], [targets[i] for i in perm], names, methods=AP_METHODS
    )
    assert_ap_equal(ev, ev_perm)
    assert ev.num_gt == ev_perm.num_gt and ev.num_detections == ev_perm.num_detections


@PROPERTY_SETTINGS
@given(data=datasets(), choice=st.data())
def test_duplicating_a_true_positive_never_raises_ap(data, choice):
    predictions, targets, names = data
    matches = match_detections(predictions, targets, names)
    tps = [
        (int(m.image_index[k]), int(m.detection_index[k]))
        for m in matches.values()
        for k in np.flatnonzero(m.true_positive)
    ]
    if not tps:
        return
    image, det = choice.draw(st.sampled_from(tps))
    frac = choice.draw(st.floats(0.0, 1.0, exclude_max=True))
    p = predictions[image]
    dup = pred(
        np.vstack([p["boxes"], p["boxes"][det]]),
        np.append(p["scores"], p["scores"][det] * frac),  # scores > 0, so strictly lower
        np.append(p["labels"], p["labels"][det]),
    )
    before = evaluate_detections(predictions, targets, names, methods=AP_METHODS)
    after = evaluate_detections(
        [*predictions[:image], dup, *predictions[image + 1 :]], targets, names, methods=AP_METHODS
    )
    assert_ap_not_raised(before, after)
    m_after = match_detections(
        [*predictions[:image], dup, *predictions[image + 1 :]], targets, names
    )
    assert sum(int(m.true_positive.sum()) for m in m_after.values()) == len(tps)


@PROPERTY_SETTINGS
@given(data=datasets(), choice=st.data())
def test_appending_a_low_scoring_false_positive_never_raises_ap(data, choice):
    predictions, targets, names = data
    image = choice.draw(st.integers(0, len(predictions) - 1))
    label = choice.draw(st.integers(1, len(names)))
    lowest = min((float(p["scores"].min()) for p in predictions if len(p["scores"])), default=0.0)
    p = predictions[image]
    far_away = [1000.0, 1000.0, 1010.0, 1010.0]  # overlaps no GT (all GTs lie in [0, 140])
    extended = pred(
        np.vstack([p["boxes"], far_away]),
        np.append(p["scores"], lowest - 1.0),
        np.append(p["labels"], label),
    )
    before = evaluate_detections(predictions, targets, names, methods=AP_METHODS)
    after = evaluate_detections(
        [*predictions[:image], extended, *predictions[image + 1 :]],
        targets,
        names,
        methods=AP_METHODS,
    )
    assert_ap_not_raised(before, after)


# --------------------------------------------------------------------------- pycocotools


def random_grid_dataset(seed, num_images=20, num_classes=4):
    """Random data on which VOC and COCO matching provably agree.

    COCO's evaluator differs from the VOC devkit in ways navya deliberately does not copy:
    it matches a detection to the best *still unmatched* GT (VOC: best GT, even if taken),
    it breaks score ties in its own order, keeps only the 100 top detections per image and
    class, and takes [x, y, w, h] boxes. To compare only the AP computation we avoid all of
    that: GT boxes lie inside distinct cells of a 5x5 grid of 100 px cells, so no two GTs
    overlap and (for IoU >= 0.5 with both, a detection would have to be exactly the union of
    two disjoint boxes) no detection can have IoU >= 0.5 with two GTs; scores are continuous
    random floats (distinct with probability 1); each image has far fewer than 100
    detections; boxes are converted to xywh for COCO. No GT is difficult: COCO's only
    ignore flag is ``iscrowd``, whose IoU is intersection over *detection* area, which is
    not VOC's difficult rule.
    """
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for _ in range(num_images):
        cells = rng.choice(25, size=rng.integers(0, 9), replace=False)
        x0, y0 = (cells % 5) * 100.0, (cells // 5) * 100.0
        wh = rng.uniform(15, 60, size=(len(cells), 2))
        xy = np.stack([x0, y0], axis=1) + rng.uniform(0, 100 - wh)
        gt_boxes = np.concatenate([xy, xy + wh], axis=1)
        gt_labels = rng.integers(1, num_classes + 1, size=len(cells))
        det_boxes, det_labels = [], []
        for box, label in zip(gt_boxes, gt_labels, strict=True):
            for _ in range(rng.choice(3, p=[0.2, 0.6, 0.2])):  # miss, hit, or hit + duplicate
                w, h = box[2] - box[0], box[3] - box[1]
                det_boxes.append(box + rng.uniform(-0.25, 0.25, 4) * [w, h, w, h])
                det_labels.append(
                    label if rng.random() < 0.85 else rng.integers(1, num_classes + 1)
                )
        for _ in range(rng.integers(0, 6)):  # random boxes anywhere
            xy1 = rng.uniform(0, 480, 2)
            det_boxes.append(np.concatenate([xy1, xy1 + rng.uniform(5, 80, 2)]))
            det_labels.append(rng.integers(1, num_classes + 1))
        predictions.append(
            pred(np.reshape(det_boxes, (-1, 4)), rng.uniform(0.01, 1.0, len(det_boxes)), det_labels)
        )
        targets.append(target(gt_boxes, gt_labels))
    return predictions, targets, tuple(f"c{k}" for k in range(1, num_classes + 1))


def coco_ap50(predictions, targets, num_classes):
    """Per-class AP50 (NaN without GT) and stats[1] from pycocotools, built in memory."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    images, annotations, results = [], [], []
    for image_id, (p, t) in enumerate(zip(predictions, targets, strict=True), start=1):
        images.append({"id": image_id, "width": 500, "height": 500})
        for box, label in zip(t["boxes"], t["labels"], strict=True):
            bbox = xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval treats GT id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"], strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": xywh(box),
                    "score": float(score),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k, "name": f"c{k}"} for k in range(1, num_classes + 1)],
        }
        gt.createIndex()
        dt = gt.loadRes(results)
        coco_eval = COCOeval(gt, dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    params = coco_eval.params
    t = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    a = params.areaRngLbl.index("all")
    m = params.maxDets.index(100)
    precision = coco_eval.eval["precision"][t, :, :, a, m]  # [101 recall thresholds, K]
    per_class = [float(np.mean(q)) if np.all(q > -1) else math.nan for q in precision.T]
    return per_class, float(coco_eval.stats[1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_101_point_matches_pycocotools_ap50(seed):
    pytest.importorskip("pycocotools")
    predictions, targets, names = random_grid_dataset(seed)
    assert all(len(p["scores"]) < 100 for p in predictions)
    ev = evaluate_detections(predictions, targets, names, iou_threshold=0.5, methods=("101-point",))
    coco_per_class, coco_map = coco_ap50(predictions, targets, len(names))
    for name, coco_ap in zip(names, coco_per_class, strict=True):
        ours = ev.ap["101-point"][name]
        assert (math.isnan(ours) and math.isnan(coco_ap)) or ours == pytest.approx(
            coco_ap, abs=1e-6
        )
    assert ev.map("101-point") == pytest.approx(coco_map, abs=1e-6)
    # Sanity: the data exercises both TPs and FPs, so the comparison is not trivial.
    assert 0.2 < ev.map("101-point") < 0.95
