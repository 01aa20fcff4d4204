"""BEV mean average precision by centre distance (`jepa_lightning.eval.bev_map.BEVMeanAP`) on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_lightning.eval.bev_map import BEVMeanAP, interpolated_ap, match_detections

pytestmark = pytest.mark.usefixtures("one_thread")

THRESHOLDS = (0.5, 1.0, 2.0, 4.0)


def _pred(centers, scores, labels) -> dict:
    return {"centers": torch.tensor(centers, dtype=torch.float32).reshape(-1, 2),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels)}


def _gt(centers, labels) -> dict:
    return {"centers": torch.tensor(centers, dtype=torch.float32).reshape(-1, 2), "labels": torch.tensor(labels)}


def _scene():
    """Two frames, all three classes: targets and slightly offset predictions plus some noise."""
    targets = [_gt([[10.0, 0.0], [20.0, 5.0], [5.0, -3.0]], [0, 0, 1]),
               _gt([[30.0, 2.0], [8.0, 8.0]], [2, 0])]
    preds = [_pred([[10.2, 0.1], [19.0, 5.0], [5.0, -3.3], [40.0, 0.0]], [0.9, 0.8, 0.7, 0.95], [0, 0, 1, 0]),
             _pred([[31.5, 2.0], [8.0, 8.0], [8.3, 8.0]], [0.6, 0.85, 0.5], [2, 0, 0])]
    return preds, targets


def test_perfect_predictions_give_one():
    preds, targets = _scene()
    perfect = [_pred(t["centers"].tolist(), [1.0] * len(t["labels"]), t["labels"].tolist()) for t in targets]
    out = BEVMeanAP(num_classes=3)(perfect, targets)
    assert set(out) == {"map", "ap/Car", "ap/Pedestrian", "ap/Cyclist", *(f"ap@{t}" for t in THRESHOLDS)}
    for key, value in out.items():
        assert value.item() == pytest.approx(1.0), key


def test_no_predictions_give_zero():
    _, targets = _scene()
    empty = [_pred([], [], []) for _ in targets]
    out = BEVMeanAP(num_classes=3)(empty, targets)
    assert all(v.item() == 0.0 for v in out.values())


def test_false_positive_ranked_above_true_positive():
    # One target; an FP (score 0.9) ranked above the TP (0.8): precision [0, 1/2], recall [0, 1] -> the
    # interpolated precision is 1/2 at every recall point -> AP = 0.5.
    metric = BEVMeanAP(num_classes=1, class_names=["Car"], distance_thresholds=(2.0,))
    metric.update([_pred([[10.0, 10.0], [0.3, 0.0]], [0.9, 0.8], [0, 0])], [_gt([[0.0, 0.0]], [0])])
    assert metric.compute()["map"].item() == pytest.approx(0.5)
    # Two targets; TP (0.9), FP (0.8), TP (0.7): precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]. The envelope is
    # 1 for recall points 0..0.50 (51 points) and 2/3 for 0.51..1.00 (50 points).
    metric = BEVMeanAP(num_classes=1, class_names=["Car"], distance_thresholds=(2.0,))
    metric.update([_pred([[0.0, 0.0], [50.0, 0.0], [10.0, 0.1]], [0.9, 0.8, 0.7], [0, 0, 0])],
                  [_gt([[0.0, 0.0], [10.0, 0.0]], [0, 0])])
    expected = (51 * 1.0 + 50 * (2.0 / 3.0)) / 101
    assert metric.compute()["map"].item() == pytest.approx(expected, abs=1e-6)
    # Swapping the FP below both TPs gives a perfect ranking.
    metric.reset()
    metric.update([_pred([[0.0, 0.0], [50.0, 0.0], [10.0, 0.1]], [0.9, 0.1, 0.7], [0, 0, 0])],
                  [_gt([[0.0, 0.0], [10.0, 0.0]], [0, 0])])
    assert metric.compute()["map"].item() == pytest.approx(1.0)


def test_centre_distance_thresholds():
    # 1.5 m away (diagonal offset, so the distance is Euclidean in the BEV plane): matches at 2 and 4 m only.
    metric = BEVMeanAP(num_classes=3)
    off = 1.5 / math.sqrt(2.0)
    metric.update([_pred([[10.0 + off, -5.0 + off]], [0.7], [1])], [_gt([[10.0, -5.0]], [1])])
    out = metric.compute()
    assert out["ap@0.5"].item() == 0.0 and out["ap@1.0"].item() == 0.0
    assert out["ap@2.0"].item() == pytest.approx(1.0) and out["ap@4.0"].item() == pytest.approx(1.0)
    assert out["ap/Pedestrian"].item() == pytest.approx(0.5)
    assert out["map"].item() == pytest.approx(0.5)
    # Classes without targets are excluded (NaN), not counted as 0.
    assert math.isnan(out["ap/Car"].item()) and math.isnan(out["ap/Cyclist"].item())
    # The z coordinate of wider inputs ([N, 3] or boxes) is ignored: only (x, y) count.
    metric.reset()
    metric.update([{"centers": torch.tensor([[10.0, -5.0, 3.0]]), "scores": torch.tensor([0.7]),
                    "labels": torch.tensor([1])}], [_gt([[10.0, -5.0]], [1])])
    assert metric.compute()["map"].item() == pytest.approx(1.0)


def test_duplicate_detection_is_a_false_positive():
    # Two detections of one target: the higher-scored one matches, the second is an FP. Ranking TP, FP gives
    # precision [1, 1/2] at recall [1, 1] -> envelope 1 everywhere -> AP 1; but the FP's presence is visible
    # once the duplicate outranks a second real target's detection.
    metric = BEVMeanAP(num_classes=1, class_names=["Car"], distance_thresholds=(2.0,))
    metric.update([_pred([[0.0, 0.0], [0.2, 0.0], [10.0, 0.0]], [0.9, 0.8, 0.7], [0, 0, 0])],
                  [_gt([[0.0, 0.0], [10.0, 0.0]], [0, 0])])
    assert metric.compute()["map"].item() == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    tp = match_detections(torch.tensor([[0.0, 0.0], [0.2, 0.0]]), torch.tensor([0.8, 0.9]),
                          torch.tensor([0, 0]), torch.tensor([[0.1, 0.0]]), torch.tensor([0]),
                          torch.tensor([2.0]))
    assert tp.tolist() == [[False, True]]  # the higher score wins the single target, whatever the order


def test_nearest_unmatched_target_is_taken():
    # Each detection takes the *nearest* still-free target of its group, in score order.
    tp = match_detections(torch.tensor([[1.0, 0.0], [0.1, 0.0]]), torch.tensor([0.9, 0.8]),
                          torch.tensor([0, 0]), torch.tensor([[1.8, 0.0], [0.0, 0.0]]), torch.tensor([0, 0]),
                          torch.tensor([1.0, 2.0]))
    # At 1 m: A takes x=1.8 (0.8 m, nearer than 1.0 m), B takes x=0 (0.1 m). At 2 m: same, both TP.
    assert tp.tolist() == [[True, True], [True, True]]
    tp = match_detections(torch.tensor([[0.5, 0.0], [0.1, 0.0]]), torch.tensor([0.9, 0.8]),
                          torch.tensor([0, 0]), torch.tensor([[1.8, 0.0], [0.0, 0.0]]), torch.tensor([0, 0]),
                          torch.tensor([1.0, 2.0]))
    # A takes x=0 (0.5 m); B is 1.7 m from x=1.8: an FP at 1 m, a TP at 2 m.
    assert tp.tolist() == [[True, False], [True, True]]


def test_class_mix_up_does_not_match():
    metric = BEVMeanAP(num_classes=3)
    metric.update([_pred([[5.0, 5.0]], [0.9], [2])], [_gt([[5.0, 5.0]], [0])])  # Cyclist predicted on a Car
    out = metric.compute()
    assert out["ap/Car"].item() == 0.0 and out["map"].item() == 0.0
    assert math.isnan(out["ap/Cyclist"].item())
    # Detections never match targets of another frame either.
    metric.reset()
    metric.update([_pred([[5.0, 5.0]], [0.9], [0]), _pred([], [], [])],
                  [_gt([], []), _gt([[5.0, 5.0]], [0])])
    assert metric.compute()["map"].item() == 0.0


def test_accumulation_equals_single_update_and_reset():
    preds, targets = _scene()
    once = BEVMeanAP(num_classes=3)
    once.update(preds, targets)
    full = once.compute()
    assert 0.2 < full["map"].item() < 0.9  # a non-trivial case
    split = BEVMeanAP(num_classes=3)
    split.update(preds[:1], targets[:1])
    split.update(preds[1:], targets[1:])
    for key, value in split.compute().items():
        torch.testing.assert_close(value, full[key], equal_nan=True)
    split.reset()
    split.update(preds[:1], targets[:1])
    first = BEVMeanAP(num_classes=3)
    first.update(preds[:1], targets[:1])
    for key, value in split.compute().items():
        torch.testing.assert_close(value, first.compute()[key], equal_nan=True)
    # -1 padding (as in the DataModule's `labels`) is ignored.
    padded = [{"centers": torch.cat([t["centers"], torch.zeros(2, 2)]),
               "labels": torch.cat([t["labels"], torch.full((2,), -1)])} for t in targets]
    pad_metric = BEVMeanAP(num_classes=3)
    pad_metric.update(preds, padded)
    torch.testing.assert_close(pad_metric.compute()["map"], full["map"])


def _reference_tp(preds: list[dict], targets: list[dict], thresholds, num_classes) -> dict:
    """Plain-Python greedy matching, global descending score order: {(class, t): [tp flags in rank order]}."""
    out = {}
    for c in range(num_classes):
        dets = [(float(s), f, p["centers"][i]) for f, p in enumerate(preds)
                for i, (s, lab) in enumerate(zip(p["scores"], p["labels"])) if int(lab) == c]
        order = sorted(range(len(dets)), key=lambda k: -dets[k][0])  # stable: ties keep frame/index order
        for t in thresholds:
            taken = set()
            flags = []
            for k in order:
                _, f, xy = dets[k]
                best, best_d = None, float("inf")
                for j, (g, lab) in enumerate(zip(targets[f]["centers"], targets[f]["labels"])):
                    d = float(torch.linalg.vector_norm(xy - g))
                    if int(lab) == c and (f, j) not in taken and d < best_d:
                        best, best_d = j, d
                ok = best is not None and best_d < t
                if ok:
                    taken.add((f, best))
                flags.append(ok)
            out[c, t] = flags
    return out


def test_vectorised_matching_matches_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _ in range(6):
        m, extra = int(torch.randint(0, 8, (1,), generator=g)), int(torch.randint(0, 6, (1,), generator=g))
        centers, labels = torch.rand(m, 2, generator=g) * 10, torch.randint(0, 3, (m,), generator=g)
        targets.append({"centers": centers, "labels": labels})
        # Jittered copies of the targets (some twice, some with a wrong class) plus random extras.
        src = torch.randint(0, max(m, 1), (m + m // 2,), generator=g)[: 2 * m]
        n = src.numel() + extra
        wrong = torch.rand(src.numel(), generator=g) < 0.2
        preds.append({"centers": torch.cat([centers[src] + torch.randn(src.numel(), 2, generator=g) * 1.5,
                                            torch.rand(extra, 2, generator=g) * 10]),
                      "scores": torch.randint(0, 5, (n,), generator=g).float() / 5,  # many ties
                      "labels": torch.cat([torch.where(wrong, (labels[src] + 1) % 3, labels[src]),
                                           torch.randint(0, 3, (extra,), generator=g)])})
    ref = _reference_tp(preds, targets, THRESHOLDS, 3)
    # The vectorised matcher on the same flattening the metric uses (group = frame * C + class).
    frame_p = torch.cat([torch.full((len(p["labels"]),), f) for f, p in enumerate(preds)])
    frame_t = torch.cat([torch.full((len(t["labels"]),), f) for f, t in enumerate(targets)])
    cat_p = {k: torch.cat([p[k] for p in preds]) for k in preds[0]}
    cat_t = {k: torch.cat([t[k] for t in targets]) for k in targets[0]}
    tp = match_detections(cat_p["centers"], cat_p["scores"], frame_p * 3 + cat_p["labels"], cat_t["centers"],
                          frame_t * 3 + cat_t["labels"], torch.tensor(THRESHOLDS))
    metric = BEVMeanAP(num_classes=3, distance_thresholds=THRESHOLDS)
    metric.update(preds, targets)
    ap = metric.ap_matrix()
    num_targets = torch.bincount(cat_t["labels"], minlength=3)
    for c in range(3):
        idx = torch.nonzero(cat_p["labels"] == c).squeeze(1)
        idx = idx[torch.argsort(-cat_p["scores"][idx], stable=True)]
        flags = torch.tensor([ref[c, t] for t in THRESHOLDS], dtype=torch.bool).reshape(len(THRESHOLDS), -1)
        assert torch.equal(tp[:, idx], flags), c
        assert flags[-1].any() and not flags[0].all(), "the random case should be non-trivial"
        torch.testing.assert_close(ap[c], interpolated_ap(flags, int(num_targets[c])))


def test_interpolated_ap_by_hand():
    # 4 targets, ranking TP FP TP FP: precision [1, .5, 2/3, .5], recall [.25, .25, .5, .5]. Envelope: 1 for
    # r <= .25 (26 points), 2/3 for .25 < r <= .5 (25 points), 0 beyond.
    ap = interpolated_ap(torch.tensor([[True, False, True, False]]), 4)
    assert ap.item() == pytest.approx((26 + 25 * 2 / 3) / 101)
    assert math.isnan(interpolated_ap(torch.zeros(1, 0, dtype=torch.bool), 0).item())


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="class_names has 2 names"):
        BEVMeanAP(num_classes=3, class_names=["Car", "Pedestrian"])
    with pytest.raises(ValueError, match="distance_thresholds"):
        BEVMeanAP(distance_thresholds=(1.0, -2.0))
    metric = BEVMeanAP(num_classes=3)
    with pytest.raises(ValueError, match="2 prediction frames but 1 target"):
        metric.update([_pred([], [], []), _pred([], [], [])], [_gt([], [])])
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] contains 3"):
        metric.update([_pred([], [], [])], [_gt([[0.0, 0.0]], [3])])
    with pytest.raises(KeyError, match=r"preds\[0\] lacks key\(s\) \['scores'\]"):
        metric.update([{"centers": torch.zeros(1, 2), "labels": torch.zeros(1)}], [_gt([], [])])
    with pytest.raises(ValueError, match=r"'scores'\] has 2 entries for 1 centers"):
        metric.update([{"centers": torch.zeros(1, 2), "scores": torch.zeros(2), "labels": torch.zeros(1)}],
                      [_gt([], [])])


def _sync_two_ranks(rank0: BEVMeanAP, rank1: BEVMeanAP) -> None:
    """Emulate a 2-process DDP sync of ``rank0`` in-process: every state is gathered as [rank0's, rank1's]
    (the list torchmetrics' gather returns), after the same pre-concatenation torchmetrics applies; like a real
    all_gather, both ranks must send the same dtype and number of dimensions."""
    other = {}
    for attr in rank0._reductions:
        value = getattr(rank1, attr)
        other[attr] = torch.cat(value) if value else torch.tensor([], dtype=rank1.dtype)
    pending = iter(rank0._reductions)

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        theirs = other[next(pending)]
        assert tensor.dtype == theirs.dtype and tensor.dim() == theirs.dim(), (tensor.dtype, theirs.dtype)
        return [tensor, theirs]

    rank0._sync_dist(dist_sync_fn=gather)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric BEVMeanAP was called before")
@pytest.mark.parametrize("split", ["one_frame_each", "second_rank_empty", "first_rank_empty"])
def test_ddp_gather_equals_single_process(split):
    preds, targets = _scene()
    single = BEVMeanAP(num_classes=3)
    single.update(preds, targets)
    expected = single.compute()
    rank0, rank1 = BEVMeanAP(num_classes=3), BEVMeanAP(num_classes=3)
    if split == "one_frame_each":
        rank0.update(preds[:1], targets[:1])
        rank1.update(preds[1:], targets[1:])
    elif split == "second_rank_empty":
        rank0.update(preds[:1], targets[:1])
        rank0.update(preds[1:], targets[1:])
    else:
        rank1.update(preds, targets)
    _sync_two_ranks(rank0, rank1)
    assert all(isinstance(getattr(rank0, attr), torch.Tensor) for attr in rank0._reductions)  # gathered
    for key, value in rank0.compute().items():
        torch.testing.assert_close(value, expected[key], equal_nan=True)
