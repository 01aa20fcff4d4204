"""Geometry of LiDAR scenes in the LiDAR frame, where a box is ``[x, y, z, dx, dy, dz, heading]`` (centre, sizes,
yaw around z): box corners, points in boxes, BEV voxelization and the global training augmentations.

BEV input (:func:`voxelize`, :func:`voxelize_batch`; conventions of the AD-L-JEPA interface): a point is in range
iff ``min <= coord < max`` on every axis, its voxel is ``floor((coord - min) / size)``; the ``[C_in, ny, nx]``
tensor holds the occupancy of the ``nz`` height slices, then the mean intensity and ``log1p(count)`` of the points
of each BEV cell (``C_in = nz + 2``). All of it is scatter/index_put over all points at once.

Augmentations (training split only, drawn from the per-sample seed of :class:`~datamodules.common.EpochSampler`):
x-axis flip (``y -> -y``, heading negated) with probability 1/2, a global rotation around z by ``U(-r, r)``
(``r = pi / 4``), a global scaling by ``U(0.95, 1.05)``, applied to points and boxes alike before the range crop
(as OpenPCDet's ``random_world_flip/rotation/scaling``); boxes whose centre leaves the range are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _wrap(angle: np.ndarray | torch.Tensor) -> Any:
    """Angles to ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


# ================================================================================================ geometry
def box_corners(boxes: np.ndarray) -> np.ndarray:
    """``[M, 8, 3]`` corners of ``[M, 7]`` boxes."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs[None] * boxes[:, None, 3:6] / 2
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


def points_in_boxes(points: torch.Tensor | np.ndarray, boxes: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``[M, N]`` bool: point ``n`` (first 3 coords) lies inside (or on) box ``m`` (``[x, y, z, dx, dy, dz,
    heading]``)."""
    p = torch.as_tensor(points, dtype=torch.float64)[:, :3]
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 7)
    d = p[None] - b[:, None, :3]  # [M, N, 3]
    c, s = torch.cos(b[:, 6])[:, None], torch.sin(b[:, 6])[:, None]
    lx = c * d[..., 0] + s * d[..., 1]
    ly = -s * d[..., 0] + c * d[..., 1]
    half = b[:, None, 3:6] / 2
    return (lx.abs() <= half[..., 0]) & (ly.abs() <= half[..., 1]) & (d[..., 2].abs() <= half[..., 2])


# ============================================================================================ voxelization
def grid_size(point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` = ``round((max - min) / size)`` per axis."""
    if len(point_cloud_range) != 6 or len(voxel_size) != 3:
        raise ValueError(f"point_cloud_range needs 6 values (x_min, y_min, z_min, x_max, y_max, z_max) and voxel_size"
                         f" 3 (vx, vy, vz); got {tuple(point_cloud_range)} and {tuple(voxel_size)}")
    sizes = []
    for axis in range(3):
        lo, hi, v = point_cloud_range[axis], point_cloud_range[axis + 3], voxel_size[axis]
        if v <= 0 or hi <= lo:
            raise ValueError(f"axis {'xyz'[axis]}: need max > min and voxel size > 0, got range ({lo}, {hi}) and"
                             f" voxel size {v}")
        sizes.append(max(1, round((hi - lo) / v)))
    return sizes[0], sizes[1], sizes[2]


def in_range(points: torch.Tensor, point_cloud_range: Sequence[float]) -> torch.Tensor:
    """``[..., N]`` bool: ``min <= coord < max`` on x, y and z."""
    lo = torch.tensor(point_cloud_range[:3], dtype=points.dtype, device=points.device)
    hi = torch.tensor(point_cloud_range[3:], dtype=points.dtype, device=points.device)
    xyz = points[..., :3]
    return ((xyz >= lo) & (xyz < hi)).all(-1)


def voxelize_batch(points: torch.Tensor, num_points: torch.Tensor | None, point_cloud_range: Sequence[float],
                   voxel_size: Sequence[float]) -> torch.Tensor:
    """BEV input ``[B, nz + 2, ny, nx]`` of zero-padded clouds ``points [B, N, 4]`` (``num_points [B]`` valid
    points each; None = all): occupancy of each height slice, then per BEV cell the mean intensity and
    ``log1p(count)`` of its points. Out-of-range points are ignored. One scatter over all points of the batch."""
    nx, ny, nz = grid_size(point_cloud_range, voxel_size)
    b, n = points.shape[:2]
    device = points.device
    valid = in_range(points, point_cloud_range)
    if num_points is not None:
        valid &= torch.arange(n, device=device)[None] < num_points.to(device)[:, None]
    batch_idx = torch.arange(b, device=device)[:, None].expand(b, n)[valid]
    p = points[valid].to(torch.float64)  # float64 indices: exact floor near cell borders
    lo = torch.tensor(point_cloud_range[:3], dtype=torch.float64, device=device)
    size = torch.tensor(voxel_size, dtype=torch.float64, device=device)
    idx = torch.floor((p[:, :3] - lo) / size).long()
    idx = torch.minimum(idx.clamp_min(0), torch.tensor([nx - 1, ny - 1, nz - 1], device=device))
    ix, iy, iz = idx.unbind(-1)
    out = torch.zeros(b, nz + 2, ny, nx, dtype=torch.float32, device=device)
    out.index_put_((batch_idx, iz, iy, ix), torch.ones_like(ix, dtype=torch.float32))
    cell = (batch_idx * ny + iy) * nx + ix
    count = torch.zeros(b * ny * nx, dtype=torch.float32, device=device).scatter_add_(
        0, cell, torch.ones_like(cell, dtype=torch.float32))
    intensity = torch.zeros(b * ny * nx, dtype=torch.float32, device=device).scatter_add_(
        0, cell, points[valid][:, 3].float())
    out[:, nz] = (intensity / count.clamp_min(1)).view(b, ny, nx)
    out[:, nz + 1] = torch.log1p(count).view(b, ny, nx)
    return out


def voxelize(points: torch.Tensor, point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> torch.Tensor:
    """BEV input ``[nz + 2, ny, nx]`` of one cloud ``[N, 4]`` (see :func:`voxelize_batch`)."""
    return voxelize_batch(points[None], None, point_cloud_range, voxel_size)[0]


# =========================================================================================== augmentation
def augment_scene(points: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator | None = None,
                  rotation: float = math.pi / 4, flip: bool = True, scale_range: tuple[float, float] = (0.95, 1.05)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global x-axis flip (p = 1/2), rotation ``U(-rotation, rotation)`` around z and scaling ``U(scale_range)``
    of points ``[N, 4]`` and boxes ``[M, 7]`` alike (new tensors; the draws come from ``generator``)."""
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    points, boxes = points.clone(), boxes.clone()
    if flip and u[0] < 0.5:
        points[:, 1] = -points[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    angle = float((2 * u[1] - 1) * rotation)
    c, s = math.cos(angle), math.sin(angle)
    for t in (points, boxes):
        x, y = t[:, 0].clone(), t[:, 1].clone()
        t[:, 0], t[:, 1] = c * x - s * y, s * x + c * y
    boxes[:, 6] = _wrap(boxes[:, 6] + angle)
    scale = float(scale_range[0] + (scale_range[1] - scale_range[0]) * u[2])
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    return points, boxes
