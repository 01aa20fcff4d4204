"""BEV mean average precision by centre distance (the nuScenes detection metric, COCO-style 101-point AP).

A detection matches a ground-truth object when both have the same class and their centres lie closer than a
distance threshold in the bird's-eye-view (x, y) plane; box sizes and headings play no role. This is the
metric AD-L-JEPA-style downstream detection is scored with here (centre heatmap + box regression heads,
CenterPoint-style, fine-tuned with a fraction of the labels).

Algorithm, per class c and threshold d:

1. All class-c detections of all frames are ranked by descending score (ties: the order they were given).
2. Greedy matching in that order: each detection takes the nearest class-c target of its own frame that no
   higher-ranked detection has taken, if that target's centre distance is ``< d`` (strict, as in nuScenes);
   otherwise it is a false positive. Each target is matched at most once, so a second detection of an
   already-matched object is a false positive (unless another free target is within ``d``).
3. Along the ranking, precision = TP / (TP + FP) and recall = TP / (number of class-c targets).
4. The precision is made monotone (interpolated: p(r) = max precision at any recall >= r) and sampled at the
   101 recall points 0, 0.01, ..., 1 (a recall point never reached contributes 0). AP = their mean, i.e. the
   area under the interpolated precision-recall curve. Unlike the nuScenes devkit, no minimum recall or
   precision is clipped off (the brief asks for the plain COCO-style area).

Matching is independent between frames, so step 2 runs vectorised: the k-th ranked detection of every
(frame, class) group and every threshold is matched at once against a padded per-group target distance
matrix, looping only over k (the largest number of detections of one class in one frame).

Classes without any target (over all frames seen) have no recall, so their AP is undefined: they are reported
as NaN and excluded from ``map`` and from the ``ap@<d>`` means (their detections are not counted anywhere).
If no class has a target, ``map`` is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
RECALL_POINTS = 101


def match_detections(pred_centers: torch.Tensor, pred_scores: torch.Tensor, pred_groups: torch.Tensor,
                     gt_centers: torch.Tensor, gt_groups: torch.Tensor,
                     thresholds: torch.Tensor) -> torch.Tensor:
    """Greedy centre-distance matching; returns ``tp`` [T, N] (bool): detection i is a true positive at
    threshold t.

    ``pred_centers`` [N, 2], ``pred_scores`` [N], ``pred_groups`` [N] int64; ``gt_centers`` [M, 2],
    ``gt_groups`` [M] int64; ``thresholds`` [T]. Detections only match targets of the same group (a group is a
    (frame, class) pair); within a group they are matched in descending score order (ties: lower index first),
    each to the nearest still-unmatched target with distance ``< threshold``.
    """
    T, N, M = thresholds.numel(), pred_centers.size(0), gt_centers.size(0)
    device = pred_centers.device
    tp = torch.zeros(T, N, dtype=torch.bool, device=device)
    if N == 0 or M == 0:
        return tp
    # Targets, padded per group: centres [G, M_max, 2] and a validity mask.
    groups, gt_inv = torch.unique(gt_groups, return_inverse=True)             # sorted group ids
    G = groups.numel()
    gt_order = torch.argsort(gt_inv, stable=True)
    gt_counts = torch.bincount(gt_inv, minlength=G)
    gt_slot = torch.arange(M, device=device) - (torch.cumsum(gt_counts, 0) - gt_counts)[gt_inv[gt_order]]
    m_max = int(gt_counts.max())
    pad = torch.zeros(G, m_max, 2, dtype=gt_centers.dtype, device=device)
    valid = torch.zeros(G, m_max, dtype=torch.bool, device=device)
    pad[gt_inv[gt_order], gt_slot] = gt_centers[gt_order]
    valid[gt_inv[gt_order], gt_slot] = True
    # Detections whose group has targets (all others are false positives at every threshold).
    pos = torch.searchsorted(groups, pred_groups).clamp_max(G - 1)
    sel = torch.nonzero(groups[pos] == pred_groups).squeeze(1)
    if sel.numel() == 0:
        return tp
    pg = pos[sel]                                                               # group slot per detection
    dist = torch.linalg.vector_norm(pred_centers[sel].unsqueeze(1) - pad[pg], dim=-1)   # [n, M_max]
    dist = dist.masked_fill(~valid[pg], float("inf"))
    # Rank within group by descending score (stable, so ties keep the given order).
    order = torch.argsort(-pred_scores[sel], stable=True)
    order = order[torch.argsort(pg[order], stable=True)]                        # by group, then score
    d_counts = torch.bincount(pg, minlength=G)
    rank = torch.arange(order.numel(), device=device) - (torch.cumsum(d_counts, 0) - d_counts)[pg[order]]
    by_rank = order[torch.argsort(rank, stable=True)]                           # all rank-0, all rank-1, ...
    per_rank = torch.bincount(rank).tolist()
    matched = torch.zeros(T, G, m_max, dtype=torch.bool, device=device)
    thr = thresholds.to(dist.dtype).view(T, 1)
    for idx in torch.split(by_rank, per_rank):                                  # one detection per group
        g = pg[idx]
        d = dist[idx].unsqueeze(0).masked_fill(matched[:, g], float("inf"))    # [T, n_k, M_max]
        d_min, nearest = d.min(-1)
        ok = d_min < thr                                                        # [T, n_k]
        tp[:, sel[idx]] = ok
        t_ok, i_ok = ok.nonzero(as_tuple=True)
        matched[t_ok, g[i_ok], nearest[t_ok, i_ok]] = True
    return tp


def interpolated_ap(tp: torch.Tensor, num_targets: int, recall_points: int = RECALL_POINTS) -> torch.Tensor:
    """AP [T] from ``tp`` [T, n] (detections in descending score order): the monotone (interpolated)
    precision-recall curve sampled at ``recall_points`` equally spaced recalls in [0, 1]; NaN if
    ``num_targets`` is 0."""
    T, n = tp.shape
    if num_targets == 0:
        return torch.full((T,), float("nan"), dtype=torch.float64, device=tp.device)
    if n == 0:
        return torch.zeros(T, dtype=torch.float64, device=tp.device)
    ctp = torch.cumsum(tp.double(), 1)
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=tp.device)
    precision = ctp / ranks
    recall = ctp / num_targets
    envelope = precision.flip(1).cummax(1).values.flip(1)                      # max precision at recall >= r
    # k / (recall_points - 1) is exactly the correctly rounded ratio, as is ctp / num_targets: equal recalls
    # compare equal.
    r = torch.arange(recall_points, dtype=torch.float64, device=tp.device) / (recall_points - 1)
    first = torch.searchsorted(recall, r.expand(T, -1).contiguous())           # first index with recall >= r
    sampled = torch.gather(envelope, 1, first.clamp_max(n - 1))
    return torch.where(first < n, sampled, torch.zeros_like(sampled)).mean(1)


class BEVMeanAP(Metric):
    """BEV mean average precision by centre distance (see the module docstring for the algorithm).

    ``update(preds, targets)`` takes one dict per frame: ``preds[i]`` = {"centers" [N, 2] (x, y; wider inputs
    such as [N, 7] boxes use their first two columns), "scores" [N], "labels" [N]}, ``targets[i]`` =
    {"centers" [M, 2], "labels" [M]}. Negative labels are padding and ignored (the DataModule pads ``labels``
    with -1); labels >= ``num_classes`` are an error.

    ``compute()`` returns ``map`` (mean over the classes with targets and all thresholds), ``ap/<class>``
    (per class, mean over thresholds; NaN for a class without targets) and ``ap@<d>`` (per threshold, e.g.
    ``ap@2.0``, mean over the classes with targets).

    States are lists of flat 1-D float tensors (``dist_reduce_fx="cat"``: centres, scores, labels) plus per-frame
    object counts, from which the frame of each row is recovered after a DDP gather (the counts are concatenated
    in the same rank order as the rows). A rank that saw no frame syncs too (as empty states).
    ``class_names`` default to the KITTI names ("Car", "Pedestrian", "Cyclist") for 3 classes, else "0", "1",...
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int = 3, class_names: list[str] | None = None,
                 distance_thresholds: Sequence[float] = (0.5, 1.0, 2.0, 4.0), **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"BEVMeanAP: num_classes must be >= 1, got {num_classes}")
        if class_names is None:
            class_names = list(KITTI_CLASSES) if num_classes == 3 else [str(c) for c in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"BEVMeanAP: class_names has {len(class_names)} names {list(class_names)}, "
                             f"expected num_classes={num_classes}")
        thresholds = tuple(float(t) for t in distance_thresholds)
        if not thresholds or any(not t > 0 for t in thresholds):
            raise ValueError(f"BEVMeanAP: distance_thresholds must be a non-empty list of positive distances "
                             f"in metres, got {list(distance_thresholds)}")
        self.num_classes, self.class_names, self.distance_thresholds = num_classes, list(class_names), thresholds
        for name in ("pred_centers", "pred_scores", "pred_labels", "pred_counts",
                     "gt_centers", "gt_labels", "gt_counts"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _rows(self, frame: dict, i: int, kind: str, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        missing = [k for k in keys if k not in frame]
        if missing:
            raise KeyError(f"BEVMeanAP.update: {kind}[{i}] lacks key(s) {missing}; expected {list(keys)}")
        centers = torch.as_tensor(frame["centers"], device=self.device).detach()
        if centers.dim() != 2 or centers.size(1) < 2:
            raise ValueError(f"BEVMeanAP.update: {kind}[{i}]['centers'] must be [N, 2] (x, y), "
                             f"got {list(centers.shape)}")
        out = {"centers": centers[:, :2].float()}
        for k in keys[1:]:
            v = torch.as_tensor(frame[k], device=self.device).detach().reshape(-1)
            if v.numel() != centers.size(0):
                raise ValueError(f"BEVMeanAP.update: {kind}[{i}]['{k}'] has {v.numel()} entries for "
                                 f"{centers.size(0)} centers")
            out[k] = v.float() if k == "scores" else v.long()
        labels = out["labels"]
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(f"BEVMeanAP.update: {kind}[{i}]['labels'] contains {int(labels.max())}, expected "
                             f"class ids in [0, {self.num_classes}) (negative = padding)")
        keep = labels >= 0
        return {k: v[keep] for k, v in out.items()}

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"BEVMeanAP.update: {len(preds)} prediction frames but {len(targets)} target "
                             f"frames")
        if not preds:
            return
        p = [self._rows(f, i, "preds", ("centers", "scores", "labels")) for i, f in enumerate(preds)]
        t = [self._rows(f, i, "targets", ("centers", "labels")) for i, f in enumerate(targets)]
        # Every state is a 1-D float tensor (labels and counts are small integers, exact in float32): a rank
        # that saw no data is gathered as an empty float tensor, which must match the others' dtype and rank.
        def flat(x: list[torch.Tensor] | list[int]) -> torch.Tensor:
            if isinstance(x[0], int):
                return torch.tensor(x, dtype=self.dtype, device=self.device)
            return torch.cat(x).to(self.dtype).reshape(-1)

        self.pred_centers.append(flat([f["centers"] for f in p]))
        self.pred_scores.append(flat([f["scores"] for f in p]))
        self.pred_labels.append(flat([f["labels"] for f in p]))
        self.pred_counts.append(flat([f["labels"].numel() for f in p]))
        self.gt_centers.append(flat([f["centers"] for f in t]))
        self.gt_labels.append(flat([f["labels"] for f in t]))
        self.gt_counts.append(flat([f["labels"].numel() for f in t]))

    def ap_matrix(self) -> torch.Tensor:
        """AP [num_classes, num_thresholds] (float64; NaN rows for classes without targets)."""
        C, T = self.num_classes, len(self.distance_thresholds)
        if isinstance(self.gt_counts, list) and not self.gt_counts:
            return torch.full((C, T), float("nan"), dtype=torch.float64, device=self.device)
        cat = {name: dim_zero_cat(getattr(self, name)) for name in
               ("pred_centers", "pred_scores", "pred_labels", "pred_counts", "gt_centers", "gt_labels",
                "gt_counts")}
        pred_labels, gt_labels = cat["pred_labels"].long(), cat["gt_labels"].long()
        frames = torch.arange(cat["gt_counts"].numel(), device=self.device)
        pred_frame = torch.repeat_interleave(frames, cat["pred_counts"].long())
        gt_frame = torch.repeat_interleave(frames, cat["gt_counts"].long())
        thresholds = torch.tensor(self.distance_thresholds, device=self.device)
        tp = match_detections(cat["pred_centers"].reshape(-1, 2), cat["pred_scores"], pred_frame * C + pred_labels,
                              cat["gt_centers"].reshape(-1, 2), gt_frame * C + gt_labels, thresholds)
        num_targets = torch.bincount(gt_labels, minlength=C).tolist()
        ap = []
        for c in range(C):
            idx = torch.nonzero(pred_labels == c).squeeze(1)
            idx = idx[torch.argsort(-cat["pred_scores"][idx], stable=True)]
            ap.append(interpolated_ap(tp[:, idx], num_targets[c]))
        return torch.stack(ap)

    def compute(self) -> dict[str, torch.Tensor]:
        ap = self.ap_matrix()
        out = {"map": torch.nanmean(ap).float()}
        for c, name in enumerate(self.class_names):
            out[f"ap/{name}"] = ap[c].mean().float()
        for j, d in enumerate(self.distance_thresholds):
            out[f"ap@{d}"] = torch.nanmean(ap[:, j]).float()
        return out
