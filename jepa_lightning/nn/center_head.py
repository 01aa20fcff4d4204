"""CenterPoint-style BEV detection head: centre heatmaps + box regression at the centre cell (Yin et al., 2021).

The downstream detector of AD-L-JEPA (Zhu et al., 2025) fine-tunes a pretrained BEV encoder with a dense head
(CenterPoint / OpenPCDet ``CenterHead``); this module is our vectorised version of its three pieces:

Targets (:func:`center_targets`), for every box ``[x, y, z, dx, dy, dz, heading]`` of class c, with the feature
cell size ``(vx * s, vy * s)`` (voxel size times the encoder stride ``s``)::

    (fx, fy)   = ((x - x_min) / (vx * s), (y - y_min) / (vy * s))      continuous centre in feature cells
    (ix, iy)   = floor(fx, fy)                                          the centre cell (row iy, column ix)
    r          = max(min_radius, int(gaussian_radius(dx / (vx * s), dy / (vy * s), overlap)))
    heatmap[c] = max(heatmap[c], exp(-((u - ix)^2 + (v - iy)^2) / (2 sigma^2)))  on |u - ix|, |v - iy| <= r,
                 sigma = (2 r + 1) / 6                                  (1 exactly at the centre cell)
    target     = [fx - ix, fy - iy, z, log dx, log dy, log dz, sin heading, cos heading]   at cell (iy, ix)

``gaussian_radius`` is CornerNet/CenterNet's: the largest corner displacement r such that a box shifted by r
still overlaps the true box with IoU >= ``overlap``, the minimum of three cases (both corners moved inwards,
outwards, one of each), in the closed form the CenterNet/CenterPoint code uses.

Losses: the CenterNet focal loss on the sigmoid heatmap (alpha 2, beta 4; positives are the cells where the
target is exactly 1, negatives are down-weighted by ``(1 - target)^4`` near the centres; normalised by the
number of positives) and an L1 loss on the 8 regression channels gathered at the objects' centre cells,
weighted per channel by ``code_weights`` and normalised by the number of objects.

Decoding (:func:`decode`): sigmoid heatmap, 3x3 max-pool peak picking (a cell survives if it is the maximum of its
neighbourhood), top-K over classes x cells, then the regression channels at the K cells give the boxes::

    x = (ix + offset_x) * vx * s + x_min,  y likewise,  z,  (dx, dy, dz) = exp(log sizes),
    heading = atan2(sin, cos)

No NMS (CenterPoint's peak picking replaces it at this scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.nn.bev import conv_bn_relu

__all__ = ["REGRESSION_CHANNELS", "CenterHead", "center_targets", "decode", "focal_loss", "gaussian_radius",
           "regression_loss"]

#: Regression channels per object, in the order of :func:`center_targets`'s ``targets`` (8 in all).
REGRESSION_CHANNELS = (("offset", 2), ("z", 1), ("size", 3), ("heading", 2))
HEATMAP_BIAS = -2.19  # sigmoid(-2.19) ~ 0.1: the prior of an object centre (focal-loss init, as CenterNet)


class CenterHead(nn.Module):
    """Shared conv3x3-BN-ReLU, then one branch per output (conv3x3-BN-ReLU + conv1x1).

    ``forward(features [B, D, h, w])`` returns maps ``heatmap`` [B, num_classes, h, w] (logits, bias initialised to
    -2.19), ``offset`` [B, 2, h, w] (centre within the cell, in cells), ``z`` [B, 1, h, w] (metres), ``size``
    [B, 3, h, w] (log of dx, dy, dz in metres) and ``heading`` [B, 2, h, w] (sin, cos).

    Args:
        in_dim: feature channels D of the encoder.
        num_classes: heatmap channels.
        head_dim: channels of the shared conv and of every branch.
    """

    def __init__(self, in_dim: int, num_classes: int = 3, head_dim: int = 64) -> None:
        super().__init__()
        if num_classes < 1 or head_dim < 1:
            raise ValueError(f"CenterHead: need num_classes >= 1 and head_dim >= 1, got {num_classes}, {head_dim}")
        self.num_classes = int(num_classes)
        self.shared = conv_bn_relu(in_dim, head_dim)
        outputs = {"heatmap": num_classes, **dict(REGRESSION_CHANNELS)}
        self.branches = nn.ModuleDict({name: nn.Sequential(conv_bn_relu(head_dim, head_dim),
                                                           nn.Conv2d(head_dim, dim, 1))
                                       for name, dim in outputs.items()})
        nn.init.constant_(self.branches["heatmap"][-1].bias, HEATMAP_BIAS)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.shared(features)
        return {name: branch(x) for name, branch in self.branches.items()}


# ---------------------------------------------------------------------------------------------------- targets
def gaussian_radius(height: torch.Tensor, width: torch.Tensor, overlap: float = 0.1) -> torch.Tensor:
    """CenterNet's Gaussian radius (elementwise, in cells) of boxes ``height`` x ``width`` (cells): the smallest
    of the three CornerNet cases' corner displacements that keep IoU >= ``overlap``."""
    h, w = height.float(), width.float()
    b1, c1 = h + w, w * h * (1 - overlap) / (1 + overlap)
    r1 = (b1 + torch.sqrt((b1 ** 2 - 4 * c1).clamp_min(0))) / 2
    b2, c2 = 2 * (h + w), (1 - overlap) * w * h
    r2 = (b2 + torch.sqrt((b2 ** 2 - 16 * c2).clamp_min(0))) / 2
    a3, b3, c3 = 4 * overlap, -2 * overlap * (h + w), (overlap - 1) * w * h
    r3 = (b3 + torch.sqrt((b3 ** 2 - 4 * a3 * c3).clamp_min(0))) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _cell_size(voxel_size: Sequence[float], feature_stride: int) -> tuple[float, float]:
    return float(voxel_size[0]) * feature_stride, float(voxel_size[1]) * feature_stride


def center_targets(boxes: torch.Tensor, labels: torch.Tensor, point_cloud_range: Sequence[float],
                   voxel_size: Sequence[float], feature_stride: int, num_classes: int, grid_hw: Sequence[int],
                   min_radius: int = 2, overlap: float = 0.1) -> dict[str, torch.Tensor]:
    """Heatmaps and per-object regression targets for a batch of boxes, all boxes at once (no loop).

    Args:
        boxes: ``[B, M, 7]`` LiDAR-frame boxes ``[x, y, z, dx, dy, dz, heading]`` (any padding values).
        labels: ``[B, M]`` class ids, -1 = padding.
        point_cloud_range, voxel_size: the grid (``(x_min, y_min, z_min, x_max, y_max, z_max)``, ``(vx, vy, vz)``).
        feature_stride: the encoder's downsampling ``s`` (a feature cell is ``s`` x ``s`` voxels).
        num_classes: heatmap channels (labels >= num_classes are an error).
        grid_hw: the feature grid ``(h, w)`` (= ``(ny / s, nx / s)``).
        min_radius: smallest Gaussian radius in cells; overlap: the IoU of :func:`gaussian_radius`.

    Returns a dict:
        ``heatmap`` [B, num_classes, h, w] float: per class the max over its objects' Gaussians (1 at centres);
        ``targets`` [B, M, 8] float: ``[offset_x, offset_y, z, log dx, log dy, log dz, sin, cos]`` per object
            (0 where invalid);
        ``indices`` [B, M] int64: the centre cell ``iy * w + ix`` (0 where invalid);
        ``mask`` [B, M] bool: the object is valid (not padding, centre inside the grid, positive sizes);
        ``labels`` [B, M] int64: the class ids (-1 where invalid);
        ``radius`` [B, M] int64: the Gaussian radius in cells (0 where invalid).
    """
    if boxes.dim() != 3 or boxes.size(-1) < 7 or labels.shape != boxes.shape[:2]:
        raise ValueError(f"center_targets: expected boxes [B, M, 7] and labels [B, M], got {tuple(boxes.shape)} "
                         f"and {tuple(labels.shape)}")
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"center_targets: label {int(labels.max())} >= num_classes={num_classes}")
    h, w = int(grid_hw[0]), int(grid_hw[1])
    B, M = labels.shape
    device = boxes.device
    boxes = boxes[..., :7].float()
    cx, cy = _cell_size(voxel_size, feature_stride)
    fx = (boxes[..., 0] - float(point_cloud_range[0])) / cx
    fy = (boxes[..., 1] - float(point_cloud_range[1])) / cy
    ix, iy = torch.floor(fx), torch.floor(fy)
    sizes = boxes[..., 3:6]
    mask = (labels >= 0) & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (sizes > 0).all(-1)
    mask &= torch.isfinite(boxes).all(-1)
    ix = torch.where(mask, ix, torch.zeros_like(ix)).long()
    iy = torch.where(mask, iy, torch.zeros_like(iy)).long()
    radius = gaussian_radius(sizes[..., 1] / cy, sizes[..., 0] / cx, overlap).nan_to_num(0.0)
    radius = torch.where(mask, radius.long().clamp_min(int(min_radius)), torch.zeros_like(radius, dtype=torch.long))

    safe = torch.where(mask[..., None], boxes, torch.ones_like(boxes))
    targets = torch.cat([(fx - ix).unsqueeze(-1), (fy - iy).unsqueeze(-1), safe[..., 2:3], safe[..., 3:6].log(),
                         torch.sin(safe[..., 6:7]), torch.cos(safe[..., 6:7])], -1)
    targets = targets * mask[..., None]

    # Gaussians: every valid object paints a (2R+1)^2 window (R = the batch's largest radius), masked to its own
    # radius and to the grid, into the flat heatmap with a scatter-max.
    heatmap = torch.zeros(B * num_classes * h * w, device=device)
    b_idx, m_idx = mask.nonzero(as_tuple=True)
    if b_idx.numel():
        r = radius[b_idx, m_idx]
        R = int(r.max())
        d = torch.arange(-R, R + 1, device=device)
        du, dv = d.view(1, 1, -1), d.view(1, -1, 1)                            # [1, 1, 2R+1], [1, 2R+1, 1]
        u, v = ix[b_idx, m_idx].view(-1, 1, 1) + du, iy[b_idx, m_idx].view(-1, 1, 1) + dv
        sigma = (2 * r.float() + 1) / 6
        g = torch.exp(-(du ** 2 + dv ** 2).float() / (2 * sigma.view(-1, 1, 1) ** 2))
        rr = r.view(-1, 1, 1)
        keep = (du.abs() <= rr) & (dv.abs() <= rr) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        plane = b_idx * num_classes + labels[b_idx, m_idx]
        flat = (plane.view(-1, 1, 1) * h + v) * w + u
        heatmap.scatter_reduce_(0, flat[keep], g[keep], reduce="amax")
    return {"heatmap": heatmap.view(B, num_classes, h, w), "targets": targets, "indices": iy * w + ix,
            "mask": mask, "labels": torch.where(mask, labels, torch.full_like(labels, -1)), "radius": radius}


# ----------------------------------------------------------------------------------------------------- losses
def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
               eps: float = 1e-4) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss of heatmap ``logits`` against Gaussian ``target`` (same shape):
    ``-(sum_pos (1-p)^alpha log p + sum_neg (1-t)^beta p^alpha log(1-p)) / max(num_pos, 1)``, with p the sigmoid
    clamped to ``[eps, 1 - eps]`` and positives the cells where ``target == 1``."""
    p = torch.sigmoid(logits.float()).clamp(eps, 1 - eps)
    target = target.float()
    pos = target.eq(1).float()
    pos_loss = (torch.log(p) * (1 - p) ** alpha * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** alpha * (1 - target) ** beta * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp_min(1.0)


def gather_regression(maps: dict[str, torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
    """The 8 regression channels of ``maps`` at flat cells ``indices`` [B, M] -> ``[B, M, 8]``."""
    reg = torch.cat([maps[name] for name, _ in REGRESSION_CHANNELS], 1).flatten(2)   # [B, 8, h*w]
    return torch.gather(reg, 2, indices[:, None].expand(-1, reg.size(1), -1)).transpose(1, 2)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    code_weights: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """Masked L1 of ``pred`` vs ``target`` [B, M, K] over the valid objects ``mask`` [B, M]:
    ``sum_k code_weights[k] * sum_objects |pred - target|_k / max(num_objects, 1)``."""
    m = mask[..., None].float()
    l1 = ((pred.float() - target.float()).abs() * m).sum((0, 1))                     # [K]
    if code_weights is not None:
        l1 = l1 * torch.as_tensor(code_weights, dtype=l1.dtype, device=l1.device)
    return l1.sum() / m.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------------------------------- decode
@torch.no_grad()
def decode(maps: dict[str, torch.Tensor], point_cloud_range: Sequence[float], voxel_size: Sequence[float],
           feature_stride: int, max_objects: int = 100, score_threshold: float = 0.1) -> list[dict[str, torch.Tensor]]:
    """Per-frame detections from head outputs (see the module docstring).

    ``maps``: :class:`CenterHead` outputs (``heatmap`` logits [B, C, h, w], ``offset``, ``z``, ``size`` (log),
    ``heading`` (sin, cos)). Returns one dict per frame: ``boxes`` [K, 7] ``[x, y, z, dx, dy, dz, heading]``
    (LiDAR frame, heading in (-pi, pi]), ``scores`` [K] (sigmoid, descending), ``labels`` [K] int64 and
    ``centers`` [K, 3] (= ``boxes[:, :3]``), directly usable by :class:`jepa_lightning.eval.bev_map.BEVMeanAP`.
    K <= ``max_objects``; only peaks with score >= ``score_threshold`` are kept.
    """
    heat = torch.sigmoid(maps["heatmap"].float())
    B, C, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(int(max_objects), C * h * w)
    scores, idx = peaks.flatten(1).topk(k, dim=1)                                    # [B, k]
    labels, cells = idx // (h * w), idx % (h * w)
    reg = gather_regression({n: maps[n].float() for n, _ in REGRESSION_CHANNELS}, cells)   # [B, k, 8]
    cx, cy = _cell_size(voxel_size, feature_stride)
    x = ((cells % w).float() + reg[..., 0]) * cx + float(point_cloud_range[0])
    y = ((cells // w).float() + reg[..., 1]) * cy + float(point_cloud_range[1])
    sizes = reg[..., 3:6].clamp(max=10.0).exp()
    heading = torch.atan2(reg[..., 6], reg[..., 7])
    boxes = torch.cat([x[..., None], y[..., None], reg[..., 2:3], sizes, heading[..., None]], -1)
    keep = scores >= score_threshold
    out = []
    for i in range(B):  # ragged output: one dict per frame (the work above is batched)
        b = boxes[i][keep[i]]
        out.append({"boxes": b, "scores": scores[i][keep[i]], "labels": labels[i][keep[i]], "centers": b[:, :3]})
    return out
