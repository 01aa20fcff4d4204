"""Patch-level (semantic segmentation) evaluation of frozen patch tokens.

Protocol: each patch gets the majority label of its pixels (ties -> the smallest class id); a kNN (cosine,
DINO-weighted votes) or a linear (multinomial logistic regression) classifier is fit on the frozen patch tokens
of the training images and predicts the patches of the evaluation images; the score is the mean IoU
(torchmetrics ``MulticlassJaccardIndex``, per class) averaged over the classes present in the evaluation
patches' labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex

from jepa_lightning.eval.frozen_heads import fit_linear
from jepa_lightning.eval.knn import knn_predict


def patch_labels(segmentation: torch.Tensor, patch_size: int, num_classes: int) -> torch.Tensor:
    """Majority label [B, (H/p)*(W/p)] (row-major patches) of the pixel labels ``segmentation`` [B, H, W]."""
    if segmentation.dim() != 3:
        raise ValueError(f"segmentation must be [B, H, W], got {list(segmentation.shape)}")
    B, H, W = segmentation.shape
    if H % patch_size or W % patch_size:
        raise ValueError(f"segmentation {H}x{W} is not divisible into {patch_size}x{patch_size} patches")
    if int(segmentation.min()) < 0 or int(segmentation.max()) >= num_classes:
        raise ValueError(f"segmentation labels must be in [0, {num_classes}), got "
                         f"[{int(segmentation.min())}, {int(segmentation.max())}]")
    onehot = F.one_hot(segmentation.long(), num_classes).permute(0, 3, 1, 2).float()      # [B, C, H, W]
    votes = F.avg_pool2d(onehot, patch_size)                                               # [B, C, h, w]
    return votes.argmax(1).flatten(1)


@torch.no_grad()
def patch_features(encode: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[dict[str, Any]],
                   patch_size: int, num_classes: int, image_key: str = "image",
                   segmentation_key: str = "segmentation") -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen patch tokens [M, D] and their majority labels [M] over all ``batches`` (``encode``: images ->
    tokens [B, N, D] in row-major patch order; ``None`` batches are skipped)."""
    feats, labels = [], []
    for batch in batches:
        if batch is None:
            continue
        tokens = encode(batch[image_key])
        lab = patch_labels(batch[segmentation_key], patch_size, num_classes)
        if tokens.shape[:2] != lab.shape:
            raise ValueError(f"encoder returned {list(tokens.shape[:2])} tokens for {list(lab.shape)} patches "
                             f"of size {patch_size}")
        feats.append(tokens.flatten(0, 1).float().cpu())
        labels.append(lab.flatten().cpu())
    if not feats:
        raise ValueError("patch_features: no batch to evaluate")
    return torch.cat(feats), torch.cat(labels)


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean IoU over the classes present in ``target`` (per-class ``MulticlassJaccardIndex``)."""
    per_class = MulticlassJaccardIndex(num_classes, average="none")(pred, target)
    present = torch.bincount(target, minlength=num_classes) > 0
    return float(per_class[present].mean())


def balanced_subset(labels: torch.Tensor, max_total: int | None, generator: torch.Generator) -> torch.Tensor:
    """Indices of a random subset with at most ``max_total // (classes present)`` rows of each class (every row
    of a rarer class), in random order. Vectorized: a row's rank within its class in one shuffled order."""
    order = torch.randperm(labels.numel(), generator=generator)
    y = labels[order].long()
    onehot = F.one_hot(y, int(y.max()) + 1 if y.numel() else 1)
    present = int((onehot.sum(0) > 0).sum())
    per_class = (max_total if max_total is not None else y.numel()) // max(present, 1)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    return order[rank < per_class]


def segmentation_miou(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                      num_classes: int, classifier: Literal["knn", "linear"] = "knn", k: int = 20,
                      temperature: float = 0.07, max_train: int | None = 20000, seed: int = 0,
                      l2: float = 1e-3, balanced: bool = True) -> float:
    """Patch-level mIoU of a ``classifier`` fit on (train_x [M, D], train_y [M]) and evaluated on test.
    ``max_train``: a fixed random subset of training patches (seeded) bounds the cost; with ``balanced`` it
    draws the same number of patches from every class present (all of a class that has fewer), so the
    background, most of the patches of a scene, does not decide the classifier; ``l2``: the linear
    classifier's L2 strength (`jepa_lightning.eval.frozen_heads.fit_linear`)."""
    g = torch.Generator().manual_seed(seed)
    if balanced:
        idx = balanced_subset(train_y, max_train, g)
        train_x, train_y = train_x[idx], train_y[idx]
    elif max_train is not None and train_x.size(0) > max_train:
        idx = torch.randperm(train_x.size(0), generator=g)[:max_train]
        train_x, train_y = train_x[idx], train_y[idx]
    if classifier == "knn":
        pred = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, num_classes=num_classes)
    elif classifier == "linear":
        with torch.enable_grad():  # the exact logistic regression of the frozen-head evaluation
            head = fit_linear(train_x, train_y, test_x, test_y, "classification", num_classes, l2=l2).head
        with torch.no_grad():
            pred = head(test_x.float()).argmax(1)
    else:
        raise ValueError(f"classifier must be 'knn' or 'linear', got {classifier!r}")
    return mean_iou(pred.cpu(), test_y.cpu(), num_classes)
