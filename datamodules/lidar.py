"""LiDAR point clouds for AD-L-JEPA: a KITTI-format reader, vectorized BEV voxelization, global augmentations and
an embedded LiDAR simulator that writes the same format (no download).

Layout (KITTI object benchmark; ``split_dir`` is ``training`` by default)::

    root/training/velodyne/<id>.bin   float32 (x, y, z, intensity) per point, LiDAR frame
    root/training/label_2/<id>.txt    KITTI label lines (camera frame), one object per line
    root/training/calib/<id>.txt      P0..P3 (3x4), R0_rect (3x3), Tr_velo_to_cam (3x4)
    root/ImageSets/train.txt          frame ids, one a line (val.txt likewise)

A label line is ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y``: the box's bottom centre
``(x, y, z)`` in the rectified camera frame and its yaw ``rotation_y`` around the camera's y axis (pointing down).
It becomes a LiDAR-frame box ``[x, y, z, dx, dy, dz, heading]`` as OpenPCDet does: the centre goes through the
inverse of ``R0_rect @ Tr_velo_to_cam``, ``z`` moves up by ``h / 2`` (bottom -> centre), ``(dx, dy, dz) = (l, w,
h)`` and ``heading = -rotation_y - pi / 2``. Only Car / Pedestrian / Cyclist are kept (labels 0, 1, 2); DontCare,
Van, Truck, ... are dropped. A velodyne file whose size is not a multiple of 16 bytes, a malformed label line or an
unreadable calibration makes the frame be skipped and reported with the offending file's name
(:class:`~datamodules.common.SkipUnreadable`), never a crash.

BEV input (:func:`voxelize`, :func:`voxelize_batch`; conventions of the AD-L-JEPA interface): a point is in range
iff ``min <= coord < max`` on every axis, its voxel is ``floor((coord - min) / size)``; the ``[C_in, ny, nx]``
tensor holds the occupancy of the ``nz`` height slices, then the mean intensity and ``log1p(count)`` of the points
of each BEV cell (``C_in = nz + 2``). All of it is scatter/index_put over all points at once.

Augmentations (training split only, drawn from the per-sample seed of :class:`~datamodules.common.EpochSampler`):
x-axis flip (``y -> -y``, heading negated) with probability 1/2, a global rotation around z by ``U(-r, r)``
(``r = pi / 4``), a global scaling by ``U(0.95, 1.05)``, applied to points and boxes alike before the range crop
(as OpenPCDet's ``random_world_flip/rotation/scaling``); boxes whose centre leaves the range are dropped.

Simulator (:func:`simulate_scene`, :func:`generate_lidar_dataset`): a spinning multi-beam sensor (default 32 beams
at non-uniform elevations from -25 to +3 degrees, denser towards the horizon like an HDL-64's upper block, 1024
azimuth steps, 70 m range, 2 cm range noise, 5-10 % dropped returns, mounted 1.73 m above the ground) ray-cast
into a procedural street: ground (asphalt road, brighter sidewalks), buildings along both sides, poles, trees
(trunk cylinder + crown sphere), cars (body + cabin boxes, ~4.0 x 1.7 x 1.5 m) in lanes and parked at the curbs,
pedestrians (0.8 x 0.6 x 1.75) and cyclists (1.8 x 0.6 x 1.7). Every ray is intersected with every primitive at
once (slab method in each box's own frame, quadratic for cylinders and spheres); the nearest hit wins; the
intensity is the material's reflectivity times an incidence term. Objects with at least ``min_points`` (5) hits
inside their box are labelled. Frames are written in the KITTI layout above, with an idealised calibration
(axis permutation plus KITTI's translation, ``R0_rect = I``) so that camera <-> LiDAR conversion is exact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from .common import SKIPPED_KEY, JEPADataModule, Skipped, SkipUnreadable, embedded_root, generate_once

CLASS_NAMES = ("Car", "Pedestrian", "Cyclist")
_CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}
_LIDAR_VERSION = 1


class MalformedFile(ValueError):
    """A KITTI file that cannot be parsed; ``path`` names it (reported when the frame is skipped)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


# ====================================================================================================== reading
def read_velodyne(path: str) -> np.ndarray:
    """``[N, 4]`` float32 (x, y, z, intensity) of a KITTI ``.bin``; :class:`MalformedFile` when its size is not a
    multiple of 16 bytes (4 float32 per point)."""
    size = os.path.getsize(path)
    if size % 16:
        raise MalformedFile(path, f"{size} bytes is not a multiple of 16 (4 float32 per point): truncated file?")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


@dataclass(frozen=True)
class KittiCalib:
    """The matrices of a KITTI ``calib/<id>.txt`` that the boxes need (and P2 for the 2-D boxes written)."""

    P2: np.ndarray  # [3, 4]
    R0_rect: np.ndarray  # [3, 3]
    Tr_velo_to_cam: np.ndarray  # [3, 4]

    def _velo_to_rect(self) -> np.ndarray:
        """The 4x4 affine map LiDAR -> rectified camera: ``R0_rect @ Tr_velo_to_cam``."""
        m = np.eye(4)
        m[:3, :] = self.R0_rect @ self.Tr_velo_to_cam
        return m

    def lidar_to_rect(self, pts: np.ndarray) -> np.ndarray:
        m = self._velo_to_rect()
        return pts @ m[:3, :3].T + m[:3, 3]

    def rect_to_lidar(self, pts: np.ndarray) -> np.ndarray:
        m = np.linalg.inv(self._velo_to_rect())
        return pts @ m[:3, :3].T + m[:3, 3]

    def to_text(self) -> str:
        def row(name: str, m: np.ndarray) -> str:
            return f"{name}: " + " ".join(f"{v:.12e}" for v in np.asarray(m, dtype=np.float64).ravel())

        p = [row(f"P{i}", self.P2) for i in range(4)]
        return "\n".join([*p, row("R0_rect", self.R0_rect), row("Tr_velo_to_cam", self.Tr_velo_to_cam),
                          row("Tr_imu_to_velo", np.eye(3, 4))]) + "\n"


def default_calib() -> KittiCalib:
    """KITTI-like calibration that is an exact rigid map: camera x = -LiDAR y, camera y = -LiDAR z, camera z =
    LiDAR x, plus KITTI's LiDAR -> camera offset; ``R0_rect = I``; KITTI's P2 intrinsics."""
    tr = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27]])
    p2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
                   [0.0, 0.0, 1.0, 0.002745884]])
    return KittiCalib(P2=p2, R0_rect=np.eye(3), Tr_velo_to_cam=tr)


def read_calib(path: str) -> KittiCalib:
    """Parses ``KEY: v1 v2 ...`` lines; needs ``R0_rect`` (9 values) and ``Tr_velo_to_cam`` (12); ``P2`` optional."""
    values: dict[str, np.ndarray] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, sep, rest = line.partition(":")
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
            except ValueError:
                raise MalformedFile(path, f"line {n}: non-numeric calibration values {line.strip()!r}") from None
            if not sep:
                raise MalformedFile(path, f"line {n}: expected 'KEY: values', got {line.strip()!r}")
    shapes = {"R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4), "P2": (3, 4)}
    mats = {}
    for key, shape in shapes.items():
        v = values.get(key, np.eye(3, 4) if key == "P2" else None)
        if v is None:
            raise MalformedFile(path, f"missing '{key}' (expected {shape[0] * shape[1]} values)")
        if v.size != shape[0] * shape[1]:
            raise MalformedFile(path, f"'{key}' has {v.size} values, expected {shape[0] * shape[1]}")
        mats[key] = v.reshape(shape)
    return KittiCalib(P2=mats["P2"], R0_rect=mats["R0_rect"], Tr_velo_to_cam=mats["Tr_velo_to_cam"])


def read_label_file(path: str) -> tuple[list[str], np.ndarray]:
    """Types and ``[M, 7]`` float64 ``(h, w, l, x, y, z, rotation_y)`` of a KITTI label file (all types)."""
    names, rows = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 15:
                raise MalformedFile(path, f"line {n}: {len(fields)} fields, expected 15 (type truncated occluded"
                                          f" alpha bbox(4) h w l x y z rotation_y): {line.strip()!r}")
            try:
                nums = [float(v) for v in fields[1:15]]
            except ValueError:
                raise MalformedFile(path, f"line {n}: non-numeric field in {line.strip()!r}") from None
            if not all(math.isfinite(v) for v in nums):
                raise MalformedFile(path, f"line {n}: non-finite value in {line.strip()!r}")
            names.append(fields[0])
            rows.append(nums[7:14])
    return names, np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def _wrap(angle: np.ndarray | torch.Tensor) -> Any:
    """Angles to ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def kitti_to_lidar_boxes(names: Sequence[str], hwl_xyz_ry: np.ndarray, calib: KittiCalib
                         ) -> tuple[np.ndarray, np.ndarray]:
    """LiDAR-frame ``[M, 7]`` boxes and ``[M]`` class indices of the Car / Pedestrian / Cyclist objects."""
    keep = np.array([n in _CLASS_INDEX for n in names], dtype=bool)
    rows = hwl_xyz_ry[keep]
    height, width, length = rows[:, 0], rows[:, 1], rows[:, 2]
    centre = calib.rect_to_lidar(rows[:, 3:6])
    centre[:, 2] += height / 2  # KITTI's location is the bottom centre
    heading = _wrap(-rows[:, 6] - math.pi / 2)
    boxes = np.concatenate([centre, np.stack([length, width, height, heading], axis=1)], axis=1)
    labels = np.array([_CLASS_INDEX[n] for n, k in zip(names, keep) if k], dtype=np.int64)
    return boxes, labels


def lidar_to_kitti_lines(boxes: np.ndarray, labels: np.ndarray, calib: KittiCalib,
                         image_size: tuple[int, int] = (1242, 375)) -> list[str]:
    """KITTI label lines of LiDAR-frame boxes (inverse of :func:`kitti_to_lidar_boxes`); the 2-D box is the
    clipped image projection of the 3-D corners (zeros when the box is behind the camera)."""
    lines = []
    for box, label in zip(np.asarray(boxes, dtype=np.float64), labels):
        x, y, z, dx, dy, dz, heading = box
        bottom = calib.lidar_to_rect(np.array([[x, y, z - dz / 2]]))[0]
        ry = float(_wrap(-heading - math.pi / 2))
        alpha = float(_wrap(ry - math.atan2(bottom[0], bottom[2])))
        corners = box_corners(box[None])[0]
        rect = calib.lidar_to_rect(corners)
        if (rect[:, 2] > 0.1).all():
            uvw = np.concatenate([rect, np.ones((8, 1))], axis=1) @ calib.P2.T
            uv = uvw[:, :2] / uvw[:, 2:]
            x1, y1 = np.clip(uv.min(0), 0, image_size)
            x2, y2 = np.clip(uv.max(0), 0, image_size)
        else:
            x1 = y1 = x2 = y2 = 0.0
        lines.append(f"{CLASS_NAMES[int(label)]} 0.00 0 {alpha:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}"
                     f" {dz:.6f} {dy:.6f} {dx:.6f} {bottom[0]:.6f} {bottom[1]:.6f} {bottom[2]:.6f} {ry:.6f}")
    return lines


def write_kitti_frame(root: str, frame_id: str, points: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                      calib: KittiCalib, split_dir: str = "training") -> None:
    """Writes ``velodyne/<id>.bin``, ``label_2/<id>.txt`` and ``calib/<id>.txt`` under ``root/split_dir``."""
    base = os.path.join(root, split_dir)
    for sub in ("velodyne", "label_2", "calib"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    np.ascontiguousarray(points, dtype="<f4").tofile(os.path.join(base, "velodyne", f"{frame_id}.bin"))
    with open(os.path.join(base, "label_2", f"{frame_id}.txt"), "w") as f:
        f.write("".join(line + "\n" for line in lidar_to_kitti_lines(boxes, labels, calib)))
    with open(os.path.join(base, "calib", f"{frame_id}.txt"), "w") as f:
        f.write(calib.to_text())


def read_kitti_frame(root: str, frame_id: str, split_dir: str = "training"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points ``[N, 4]`` float32, LiDAR-frame boxes ``[M, 7]`` float64 and labels ``[M]`` int64 of one frame."""
    base = os.path.join(root, split_dir)
    points = read_velodyne(os.path.join(base, "velodyne", f"{frame_id}.bin"))
    calib = read_calib(os.path.join(base, "calib", f"{frame_id}.txt"))
    names, rows = read_label_file(os.path.join(base, "label_2", f"{frame_id}.txt"))
    boxes, labels = kitti_to_lidar_boxes(names, rows, calib)
    return points, boxes, labels


def read_split(root: str, split: str) -> list[str]:
    """The frame ids listed in ``root/ImageSets/<split>.txt``."""
    path = os.path.join(root, "ImageSets", f"{split}.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split list '{path}' does not exist; expected one frame id a line (e.g. 000123)"
                                f" naming files under {os.path.join(root, '<split_dir>', 'velodyne')}")
    with open(path) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise ValueError(f"split list '{path}' lists no frame ids")
    return ids


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


# ============================================================================================== simulator
@dataclass(frozen=True)
class LidarSensor:
    """A spinning multi-beam LiDAR at the origin of the LiDAR frame, ``height`` metres above the ground."""

    num_beams: int = 32
    azimuth_steps: int = 1024
    min_elevation: float = -25.0  # degrees
    max_elevation: float = 3.0
    max_range: float = 70.0
    range_noise: float = 0.02  # metres (std)
    dropout: tuple[float, float] = (0.05, 0.10)  # per frame, uniform in this interval
    height: float = 1.73

    def elevations(self) -> np.ndarray:
        """Beam elevations in degrees, top to bottom: spacing grows away from the top (denser near the horizon,
        like the upper block of an HDL-64)."""
        t = np.linspace(0.0, 1.0, self.num_beams)
        return self.max_elevation - (self.max_elevation - self.min_elevation) * t ** 1.5

    def directions(self) -> np.ndarray:
        """``[azimuth_steps * num_beams, 3]`` unit ray directions, azimuth-major (one firing of all beams after
        the other, as the sensor spins)."""
        el = np.deg2rad(self.elevations())[None, :]
        az = np.linspace(-math.pi, math.pi, self.azimuth_steps, endpoint=False)[:, None]
        d = np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), -1)
        return d.reshape(-1, 3)


# reflectivities of the materials
_REFLECT = {"road": 0.12, "sidewalk": 0.35, "car": 0.55, "pedestrian": 0.35, "cyclist": 0.45, "building": 0.45,
            "pole": 0.7, "trunk": 0.25, "crown": 0.2}
_SIZES = {0: (4.0, 1.7, 1.5), 1: (0.8, 0.6, 1.75), 2: (1.8, 0.6, 1.7)}  # (l, w, h) means per class


@dataclass
class _Scene:
    boxes: list  # geometry boxes [x, y, z, dx, dy, dz, yaw]
    box_obj: list  # object index (-1: background)
    box_mat: list
    cyl: list  # [cx, cy, r, z0, z1]
    cyl_mat: list
    sph: list  # [cx, cy, cz, r]
    sph_mat: list
    objects: list  # label boxes [x, y, z, dx, dy, dz, heading]
    object_cls: list


def _street(rng: np.random.Generator, ground: float) -> tuple[_Scene, float, float]:
    """A procedural street along x (slightly rotated by ``phi``): returns the scene, its road half width, phi."""
    road = float(rng.uniform(5.5, 8.0))  # half width
    curb_to_wall = float(rng.uniform(3.0, 7.0))
    sc = _Scene([], [], [], [], [], [], [], [], [])
    taken: list[tuple[float, float, float]] = [(0.0, 0.0, 3.0)]  # (x, y, radius) in street coords; ego car

    def free(x: float, y: float, r: float) -> bool:
        return all((x - a) ** 2 + (y - b) ** 2 > (r + c) ** 2 for a, b, c in taken)

    def place(cls: int, xs: tuple[float, float], ys: Sequence[float], yaw: float, jitter: float) -> None:
        ln, w, h = (s * rng.uniform(0.9, 1.1) for s in _SIZES[cls])
        for _ in range(20):
            x, y = float(rng.uniform(*xs)), float(rng.choice(np.asarray(ys)) + rng.normal(0, 0.15))
            if free(x, y, math.hypot(ln, w) / 2):
                break
        else:
            return
        taken.append((x, y, math.hypot(ln, w) / 2))
        heading = float(_wrap(yaw + rng.normal(0, jitter)))
        obj = len(sc.objects)
        sc.objects.append([x, y, ground + h / 2, ln, w, h, heading])
        sc.object_cls.append(cls)
        if cls == 0:  # body (0.25 m clearance) + cabin; 5 cm inside the label box
            body_h = 0.6 * h - 0.25
            sc.boxes.append([x, y, ground + 0.25 + body_h / 2, ln - 0.1, w - 0.1, body_h, heading])
            cx, cy = x - 0.1 * ln * math.cos(heading), y - 0.1 * ln * math.sin(heading)
            sc.boxes.append([cx, cy, ground + 0.6 * h + 0.2 * h - 0.03, 0.55 * ln, w - 0.2, 0.4 * h - 0.06, heading])
            sc.box_obj += [obj, obj]
            sc.box_mat += [_REFLECT["car"]] * 2
        else:
            sc.boxes.append([x, y, ground + h / 2, ln - 0.1, w - 0.1, h - 0.06, heading])
            sc.box_obj.append(obj)
            sc.box_mat.append(_REFLECT["pedestrian" if cls == 1 else "cyclist"])

    # buildings along both sides
    for side in (-1, 1):
        x = -75.0
        while x < 75.0:
            length, gap = rng.uniform(8, 25), rng.uniform(0, 6)
            depth, height = rng.uniform(8, 15), rng.uniform(4, 15)
            y = side * (road + curb_to_wall + depth / 2)
            sc.boxes.append([x + length / 2, y, ground + height / 2, length, depth, height, 0.0])
            sc.box_obj.append(-1)
            sc.box_mat.append(_REFLECT["building"])
            x += length + gap
    # poles and trees on the sidewalks
    for side in (-1, 1):
        for x in np.arange(-60, 70, rng.uniform(15, 25)) + rng.uniform(0, 10):
            y = side * (road + 0.4)
            sc.cyl.append([x, y, 0.1, ground, ground + rng.uniform(4, 7)])
            sc.cyl_mat.append(_REFLECT["pole"])
            taken.append((float(x), y, 0.3))
        for x in np.arange(-60, 70, rng.uniform(8, 14)) + rng.uniform(0, 6):
            if rng.random() < 0.35:
                continue
            y = side * (road + min(1.8, curb_to_wall / 2))
            trunk, crown = rng.uniform(2.0, 3.0), rng.uniform(1.0, 1.8)
            sc.cyl.append([x, y, 0.15, ground, ground + trunk])
            sc.cyl_mat.append(_REFLECT["trunk"])
            sc.sph.append([x, y, ground + trunk + 0.7 * crown, crown])
            sc.sph_mat.append(_REFLECT["crown"])
            taken.append((float(x), y, 0.5))
    # traffic
    lanes = [-road * 2 / 3, 0.0, road * 2 / 3]
    for _ in range(rng.poisson(9)):
        lane = float(rng.choice(lanes))
        yaw = 0.0 if lane <= 0 or rng.random() < 0.3 else math.pi
        if rng.random() < 0.12:
            yaw = float(rng.uniform(-math.pi, math.pi))
        place(0, (-40, 65), [lane], yaw, 0.08)
    for _ in range(rng.poisson(7)):  # parked
        side = float(rng.choice([-1, 1]))
        place(0, (-40, 65), [side * (road - 1.1)], 0.0 if rng.random() < 0.5 else math.pi, 0.04)
    sidewalks = [-(road + 1.0), road + 1.0, -(road + curb_to_wall - 0.8), road + curb_to_wall - 0.8]
    for _ in range(rng.poisson(6)):
        place(1, (-30, 55), sidewalks if rng.random() < 0.85 else [float(rng.uniform(-road, road))],
              float(rng.uniform(-math.pi, math.pi)), 0.0)
    for _ in range(rng.poisson(3)):
        place(2, (-30, 55), [-(road - 0.6), road - 0.6], 0.0 if rng.random() < 0.5 else math.pi, 0.15)
    return sc, road, float(rng.uniform(-0.2, 0.2))


def _rotate_scene(sc: _Scene, phi: float) -> None:
    c, s = math.cos(phi), math.sin(phi)
    for rows, has_yaw in ((sc.boxes, True), (sc.objects, True), (sc.cyl, False), (sc.sph, False)):
        for r in rows:
            r[0], r[1] = c * r[0] - s * r[1], s * r[0] + c * r[1]
            if has_yaw:
                r[6] = float(_wrap(r[6] + phi))


def _in_sector(d: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Indices of the primitives (bounding circles ``centres [K, 2]``, ``radii [K]`` in the xy plane) that a ray of
    the bundle ``d`` could reach: their azimuth interval overlaps the bundle's (or they surround the origin)."""
    if not len(centres):
        return np.zeros(0, dtype=np.int64)
    mean = d[:, :2].sum(0)
    a0 = math.atan2(float(mean[1]), float(mean[0]))
    spread = float(np.abs(_wrap(np.arctan2(d[:, 1], d[:, 0]) - a0)).max())
    dist = np.hypot(centres[:, 0], centres[:, 1])
    half = np.arcsin(np.clip(radii / np.maximum(dist, 1e-9), 0.0, 1.0))
    near = np.abs(_wrap(np.arctan2(centres[:, 1], centres[:, 0]) - a0)) <= spread + half + 1e-3
    return np.nonzero(near | (dist <= radii))[0]


def cast_rays(dirs: np.ndarray, boxes: np.ndarray, cylinders: np.ndarray, spheres: np.ndarray, ground: float,
              chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of rays from the origin along unit ``dirs [R, 3]`` with yawed ``boxes [Kb, 7]``, vertical
    ``cylinders [Kc, 5]`` (cx, cy, r, z0, z1; side surface), ``spheres [Ks, 4]`` and the plane ``z = ground``.

    Rays go in bundles of ``chunk`` consecutive rays (an azimuth sector when ``dirs`` is azimuth-major); each
    bundle is tested against all the primitives whose azimuth interval overlaps its own, all rays x primitives at
    once. Returns the distance ``t [R]`` (inf: no hit), the primitive ``[R]`` (index into the concatenation boxes,
    cylinders, spheres; ``-1`` the ground, ``-2`` nothing) and ``|cos|`` of the incidence angle ``[R]``.
    """
    dirs = dirs.astype(np.float32)
    n_rays = len(dirs)
    kb, kc = len(boxes), len(cylinders)
    t_out = np.full(n_rays, np.inf, dtype=np.float32)
    prim = np.full(n_rays, -2, dtype=np.int64)
    cos_out = np.zeros(n_rays, dtype=np.float32)
    b_all = boxes.astype(np.float32).reshape(-1, 7)
    cyl_all = cylinders.astype(np.float32).reshape(-1, 5)
    sph_all = spheres.astype(np.float32).reshape(-1, 4)
    box_r = np.hypot(b_all[:, 3], b_all[:, 4]) / 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_rays, chunk):
            d = dirs[start:start + chunk]
            rows = np.arange(len(d))
            best = np.full(len(d), np.inf, dtype=np.float32)
            which = np.full(len(d), -2, dtype=np.int64)
            normal = np.zeros((len(d), 3), dtype=np.float32)
            # ground plane
            tg = np.where(d[:, 2] < -1e-6, ground / d[:, 2], np.inf).astype(np.float32)
            hit = tg < best
            best[hit], which[hit], normal[hit] = tg[hit], -1, (0.0, 0.0, 1.0)
            sel = _in_sector(d, b_all[:, :2], box_r)
            if len(sel):  # slab method in each box's frame
                b = b_all[sel]
                cb, sb = np.cos(b[:, 6]), np.sin(b[:, 6])
                o_box = np.stack([-(cb * b[:, 0] + sb * b[:, 1]), -(-sb * b[:, 0] + cb * b[:, 1]), -b[:, 2]], -1)
                half = b[:, 3:6] / 2
                dl = np.stack([d[:, None, 0] * cb + d[:, None, 1] * sb, -d[:, None, 0] * sb + d[:, None, 1] * cb,
                               np.broadcast_to(d[:, None, 2], (len(d), len(sel)))], -1)  # [R, K, 3]
                dl = np.where(np.abs(dl) < 1e-9, 1e-9, dl)
                t1 = (-half - o_box) / dl
                t2 = (half - o_box) / dl
                near = np.minimum(t1, t2)
                tnear, tfar = near.max(-1), np.maximum(t1, t2).min(-1)
                tb = np.where((tfar >= tnear) & (tnear > 1e-3), tnear, np.inf)
                k = tb.argmin(1)
                tk = tb[rows, k]
                r = np.nonzero(tk < best)[0]
                if len(r):
                    axis = near[r, k[r]].argmax(-1)
                    local = np.zeros((len(r), 3), dtype=np.float32)
                    local[np.arange(len(r)), axis] = -np.sign(dl[r, k[r], axis])
                    c, s = cb[k[r]], sb[k[r]]
                    normal[r] = np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1],
                                          local[:, 2]], -1)
                    best[r], which[r] = tk[r], sel[k[r]]
            sel = _in_sector(d, cyl_all[:, :2], cyl_all[:, 2])
            if len(sel):  # side surface: |t d_xy - c|^2 = r^2, z within [z0, z1]
                cyl = cyl_all[sel]
                a = (d[:, 0] ** 2 + d[:, 1] ** 2)[:, None]
                bq = -2 * (d[:, None, 0] * cyl[:, 0] + d[:, None, 1] * cyl[:, 1])
                cq = cyl[:, 0] ** 2 + cyl[:, 1] ** 2 - cyl[:, 2] ** 2
                disc = bq ** 2 - 4 * a * cq
                tc = (-bq - np.sqrt(np.maximum(disc, 0))) / (2 * np.maximum(a, 1e-12))
                z = tc * d[:, None, 2]
                tc = np.where((disc >= 0) & (tc > 1e-3) & (z >= cyl[:, 3]) & (z <= cyl[:, 4]), tc, np.inf)
                k = tc.argmin(1)
                tk = tc[rows, k]
                r = np.nonzero(tk < best)[0]
                if len(r):
                    pxy = d[r, :2] * tk[r, None] - cyl[k[r], :2]
                    normal[r] = np.concatenate([pxy / np.linalg.norm(pxy, axis=1, keepdims=True).clip(1e-6),
                                                np.zeros((len(r), 1), np.float32)], 1)
                    best[r], which[r] = tk[r], kb + sel[k[r]]
            sel = _in_sector(d, sph_all[:, :2], sph_all[:, 3])
            if len(sel):  # |t d - c|^2 = r^2
                sph = sph_all[sel]
                bq = -2 * (d @ sph[:, :3].T)
                cq = (sph[:, :3] ** 2).sum(1) - sph[:, 3] ** 2
                disc = bq ** 2 - 4 * cq
                ts = (-bq - np.sqrt(np.maximum(disc, 0))) / 2
                ts = np.where((disc >= 0) & (ts > 1e-3), ts, np.inf)
                k = ts.argmin(1)
                tk = ts[rows, k]
                r = np.nonzero(tk < best)[0]
                if len(r):
                    p = d[r] * tk[r, None] - sph[k[r], :3]
                    normal[r] = p / np.linalg.norm(p, axis=1, keepdims=True).clip(1e-6)
                    best[r], which[r] = tk[r], kb + kc + sel[k[r]]
            t_out[start:start + chunk] = best
            prim[start:start + chunk] = which
            cos_out[start:start + chunk] = np.abs((normal * d).sum(1))
    return t_out, prim, cos_out


def simulate_scene(rng: np.random.Generator, sensor: LidarSensor = LidarSensor(), min_points: int = 5
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One LiDAR sweep of a procedural street: points ``[N, 4]`` float32 (x, y, z, intensity in [0, 1]), the
    ``[M, 7]`` boxes and ``[M]`` classes of the objects with at least ``min_points`` points inside their box."""
    ground = -sensor.height
    sc, road, phi = _street(rng, ground)
    _rotate_scene(sc, phi)
    boxes = np.asarray(sc.boxes, dtype=np.float64).reshape(-1, 7)
    cyl = np.asarray(sc.cyl, dtype=np.float64).reshape(-1, 5)
    sph = np.asarray(sc.sph, dtype=np.float64).reshape(-1, 4)
    dirs = sensor.directions()
    t, prim, cos = cast_rays(dirs, boxes, cyl, sph, ground)
    keep = (t <= sensor.max_range) & (rng.random(len(t)) >= rng.uniform(*sensor.dropout))
    dirs, t, prim, cos = dirs[keep], t[keep], prim[keep], cos[keep]
    rng_noisy = t + rng.normal(0.0, sensor.range_noise, len(t))
    xyz = dirs * rng_noisy[:, None]
    # reflectivity: ground by road / sidewalk (street coordinates), else the primitive's material
    y_street = -math.sin(phi) * xyz[:, 0] + math.cos(phi) * xyz[:, 1]
    mats = np.concatenate([np.asarray(sc.box_mat), np.asarray(sc.cyl_mat), np.asarray(sc.sph_mat)]).astype(float)
    refl = np.where(np.abs(y_street) < road, _REFLECT["road"], _REFLECT["sidewalk"])
    refl = np.where(prim >= 0, mats[np.maximum(prim, 0)] if len(mats) else 0.0, refl)
    intensity = np.clip(refl * (0.3 + 0.7 * cos) + rng.normal(0.0, 0.02, len(t)), 0.0, 1.0)
    points = np.concatenate([xyz, intensity[:, None]], 1).astype(np.float32)
    objects = np.asarray(sc.objects, dtype=np.float64).reshape(-1, 7)
    if len(objects):
        box_obj = np.asarray(sc.box_obj, dtype=np.int64)
        obj_of_point = np.where((prim >= 0) & (prim < len(box_obj)), box_obj[np.clip(prim, 0, len(box_obj) - 1)], -1)
        inside = points_in_boxes(points, objects).numpy()
        hits = (inside & (obj_of_point[None] == np.arange(len(objects))[:, None])).sum(1)
        labelled = hits >= min_points
    else:
        labelled = np.zeros(0, dtype=bool)
    return points, objects[labelled], np.asarray(sc.object_cls, dtype=np.int64)[labelled]


def generate_lidar_dataset(root: str, num_train: int = 200, num_val: int = 50, sensor: LidarSensor = LidarSensor(),
                           min_points: int = 5, seed: int = 0, split_dir: str = "training") -> dict[str, Any]:
    """Writes ``num_train + num_val`` simulated frames in the KITTI layout (ids ``000000``...; ImageSets
    ``train.txt`` / ``val.txt``); returns counts (frames, objects per class, mean points per frame)."""
    calib = default_calib()
    splits = {"train": [f"{i:06d}" for i in range(num_train)],
              "val": [f"{i:06d}" for i in range(num_train, num_train + num_val)]}
    os.makedirs(os.path.join(root, "ImageSets"), exist_ok=True)
    total_points, per_class = 0, [0] * len(CLASS_NAMES)
    for split, ids in splits.items():
        for frame_id in ids:
            rng = np.random.default_rng([seed, int(frame_id)])
            points, boxes, labels = simulate_scene(rng, sensor, min_points)
            write_kitti_frame(root, frame_id, points, boxes, labels, calib, split_dir)
            total_points += len(points)
            for c in labels:
                per_class[int(c)] += 1
        with open(os.path.join(root, "ImageSets", f"{split}.txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    frames = num_train + num_val
    return {"train": num_train, "val": num_val, "objects": dict(zip(CLASS_NAMES, per_class)),
            "points_per_frame": total_points / max(frames, 1)}


# ================================================================================================ dataset
def collate_lidar(samples: Sequence[dict[str, Any]], point_cloud_range: Sequence[float],
                  voxel_size: Sequence[float]) -> dict[str, Any]:
    """Pads ``points`` to ``[B, N_max, 4]`` (``num_points``) and ``boxes`` to ``[B, M_max, 7]`` (``labels`` -1
    padded), voxelizes the batch at once into ``bev``; ``frame`` and ``labelled`` (bool ``[B]``: the frame's
    labels were kept) pass along."""
    b = len(samples)
    n = torch.tensor([len(s["points"]) for s in samples], dtype=torch.int64)
    m = max([len(s["boxes"]) for s in samples] + [0])
    points = torch.zeros(b, int(n.max()) if b else 0, 4)
    boxes = torch.zeros(b, m, 7)
    labels = torch.full((b, m), -1, dtype=torch.int64)
    for i, s in enumerate(samples):
        points[i, :len(s["points"])] = s["points"]
        boxes[i, :len(s["boxes"])] = s["boxes"]
        labels[i, :len(s["labels"])] = s["labels"]
    return {"bev": voxelize_batch(points, n, point_cloud_range, voxel_size), "points": points, "num_points": n,
            "boxes": boxes, "labels": labels, "frame": [s["frame"] for s in samples],
            "labelled": torch.tensor([bool(s["labelled"]) for s in samples], dtype=torch.bool)}


class KittiLidarDataset(SkipUnreadable):
    """The frames ``frame_ids`` of a KITTI-layout ``root``: each sample is the range-cropped cloud, the boxes whose
    centre is in range and their classes (training: augmented with the sample's seed). Frames not in
    ``labelled`` (None = all) come without boxes. ``dataset[i]`` also holds ``bev``; a batch fetched through
    ``__getitems__`` (what the DataLoader calls) is padded and voxelized at once."""

    def __init__(self, root: str, frame_ids: Sequence[str], point_cloud_range: Sequence[float],
                 voxel_size: Sequence[float], split_dir: str = "training", augment: bool = False,
                 rotation: float = math.pi / 4, flip: bool = True, scale_range: tuple[float, float] = (0.95, 1.05),
                 labelled: set[str] | None = None) -> None:
        self.root, self.frame_ids, self.split_dir = root, list(frame_ids), split_dir
        self.point_cloud_range, self.voxel_size = tuple(point_cloud_range), tuple(voxel_size)
        grid_size(self.point_cloud_range, self.voxel_size)
        self.augment, self.rotation, self.flip, self.scale_range = augment, rotation, flip, tuple(scale_range)
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.frame_ids)

    def sample_path(self, index: int) -> str:
        return os.path.join(self.root, self.split_dir, "velodyne", f"{self.frame_ids[index]}.bin")

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return read_kitti_frame(self.root, self.frame_ids[index], self.split_dir)

    def prepare(self, raw: Any, index: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        points_np, boxes_np, labels_np = raw
        frame = self.frame_ids[index]
        has_labels = self.labelled is None or frame in self.labelled
        points = torch.from_numpy(np.array(points_np, dtype=np.float32))
        boxes = torch.from_numpy(boxes_np).float().reshape(-1, 7)
        labels = torch.from_numpy(labels_np).long().reshape(-1)
        if not has_labels:
            boxes, labels = boxes[:0], labels[:0]
        if self.augment:
            points, boxes = augment_scene(points, boxes, generator, self.rotation, self.flip, self.scale_range)
        points = points[in_range(points, self.point_cloud_range)]
        keep = in_range(boxes[:, :3], self.point_cloud_range) if len(boxes) else torch.zeros(0, dtype=torch.bool)
        return {"points": points, "boxes": boxes[keep], "labels": labels[keep], "frame": frame,
                "labelled": has_labels}

    def _load(self, key: int | tuple[int, int]) -> dict[str, Any] | Skipped:
        index, seed = key if isinstance(key, tuple) else (key, None)
        raw = self.read_or_skip(index)
        if isinstance(raw, Skipped):
            return raw
        generator = None
        if self.augment:
            if seed is None:  # no per-sample seed: one from the global torch RNG
                seed = int(torch.randint(0, 2 ** 62, (1,)))
            generator = torch.Generator().manual_seed(seed)
        return self.prepare(raw, index, generator)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | Skipped:  # type: ignore[override]
        sample = self._load(key)
        if isinstance(sample, Skipped):
            return sample
        return {**sample, "bev": voxelize(sample["points"], self.point_cloud_range, self.voxel_size)}

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> dict[str, Any]:
        loaded = [self._load(k) for k in keys]
        skipped = [s for s in loaded if isinstance(s, Skipped)]
        good = [s for s in loaded if not isinstance(s, Skipped)]
        batch = collate_lidar(good, self.point_cloud_range, self.voxel_size) if good else {}
        if skipped:
            batch[SKIPPED_KEY] = skipped
        return batch


# ============================================================================================= datamodule
class LidarDataModule(JEPADataModule):
    """KITTI-format LiDAR frames as BEV grids, points and boxes (AD-L-JEPA pretraining and detection).

    ``root`` is a KITTI-layout folder (see the module docstring); ``None`` uses the embedded simulated set,
    generated on first use into ``cache_dir/<hash of the generation parameters>`` (``cache_dir`` defaults to
    ``$JEPA_LIGHTNING_CACHE/lidar``, else ``~/.cache/jepa_lightning/lidar``), atomically. Splits are
    ``ImageSets/<train_split>.txt`` and ``<val_split>.txt``.

    Batches: ``bev`` float32 ``[B, nz + 2, ny, nx]``, ``points`` float32 ``[B, N_max, 4]`` with ``num_points``
    int64 ``[B]``, ``boxes`` float32 ``[B, M_max, 7]`` with ``labels`` int64 ``[B, M_max]`` (-1 = padding),
    ``frame`` (ids) and ``labelled`` bool ``[B]``.

    ``label_fraction`` keeps the labels of a seeded (``label_seed``) fraction of the training frames (at least one);
    the others have no boxes and ``labelled = False``; with ``labelled_only`` the training split holds only the
    labelled frames (for fine-tuning a detector on a fraction of the labels). Augmentation (``augment``) applies
    to the training split only: flip (``flip``), rotation ``U(-rotation, rotation)``, scaling ``U(scale_range)``.

    Simulator sizes: ``num_train_scenes``, ``num_val_scenes``, ``num_beams``, ``azimuth_steps``, ``max_range``,
    ``range_noise``, ``min_points`` (to label an object), ``gen_seed``.
    """

    def __init__(
        self,
        root: str | None = None,
        point_cloud_range: tuple[float, float, float, float, float, float] = (0.0, -20.0, -2.0, 40.0, 20.0, 1.0),
        voxel_size: tuple[float, float, float] = (0.25, 0.25, 0.5),
        split_dir: str = "training",
        train_split: str = "train",
        val_split: str = "val",
        augment: bool = True,
        rotation: float = math.pi / 4,
        flip: bool = True,
        scale_range: tuple[float, float] = (0.95, 1.05),
        label_fraction: float = 1.0,
        label_seed: int = 0,
        labelled_only: bool = False,
        num_train_scenes: int = 200,
        num_val_scenes: int = 50,
        num_beams: int = 32,
        azimuth_steps: int = 1024,
        max_range: float = 70.0,
        range_noise: float = 0.02,
        min_points: int = 5,
        gen_seed: int = 0,
        cache_dir: str | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, drop_last=drop_last, seed=seed)
        self.save_hyperparameters()
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.grid_size = grid_size(self.point_cloud_range, self.voxel_size)  # (nx, ny, nz)
        if not 0.0 < label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {tuple(scale_range)}")
        if rotation < 0:
            raise ValueError(f"rotation must be >= 0 radians, got {rotation}")
        for name, value, least in (("num_train_scenes", num_train_scenes, 1), ("num_val_scenes", num_val_scenes, 1),
                                   ("num_beams", num_beams, 2), ("azimuth_steps", azimuth_steps, 8),
                                   ("min_points", min_points, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        self.split_dir, self.splits = split_dir, {"train": train_split, "val": val_split}
        self.augment, self.rotation, self.flip, self.scale_range = augment, rotation, flip, tuple(scale_range)
        self.label_fraction, self.label_seed, self.labelled_only = label_fraction, label_seed, labelled_only
        self.sensor = LidarSensor(num_beams=num_beams, azimuth_steps=azimuth_steps, max_range=max_range,
                                  range_noise=range_noise)
        self.generation = {"num_train": num_train_scenes, "num_val": num_val_scenes, "min_points": min_points,
                           "seed": gen_seed, "sensor": asdict(self.sensor)}
        self.simulated = root is None
        if root is None:
            self.cache_dir: str | None
            self.cache_dir, self.root = embedded_root(cache_dir, "lidar", {**self.generation, "version": _LIDAR_VERSION})
        else:
            self.cache_dir = None
            self.root = os.path.abspath(os.path.expanduser(os.fspath(root)))
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"root '{self.root}' does not exist; expected a KITTI layout with"
                                        f" {split_dir}/velodyne, {split_dir}/label_2, {split_dir}/calib and ImageSets")
        self.generation_seconds: float | None = None
        self.generation_counts: dict[str, Any] | None = None
        self.labelled_frames: set[str] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def in_channels(self) -> int:
        """``C_in = nz + 2`` of the BEV input."""
        return self.grid_size[2] + 2

    @property
    def generated(self) -> bool:
        return not self.simulated or os.path.isfile(os.path.join(self.root, "params.json"))

    def prepare_data(self) -> None:
        """Simulates the embedded set unless cached (atomic rename; safe with concurrent processes)."""
        if self.generated:
            return
        g = self.generation
        done = generate_once(self.root, {**g, "version": _LIDAR_VERSION}, lambda folder: generate_lidar_dataset(
            folder, g["num_train"], g["num_val"], self.sensor, g["min_points"], g["seed"], self.split_dir))
        if done is not None:
            counts, seconds = done
            self.generation_seconds, self.generation_counts = seconds, counts
            rank_zero_info(f"LidarDataModule: simulated {counts['train']} + {counts['val']} frames"
                           f" ({counts['points_per_frame']:.0f} points per frame, objects {counts['objects']})"
                           f" into {self.root} in {seconds:.1f}s")

    def _dataset(self, split: str, train: bool) -> KittiLidarDataset:
        ids = read_split(self.root, self.splits[split])
        labelled = None
        if train and self.label_fraction < 1.0:
            g = torch.Generator().manual_seed(self.label_seed)
            count = max(1, round(self.label_fraction * len(ids)))
            labelled = {ids[i] for i in torch.randperm(len(ids), generator=g)[:count].tolist()}
            if self.labelled_only:
                ids = [i for i in ids if i in labelled]
        if train:
            self.labelled_frames = set(ids) if labelled is None else labelled
        return KittiLidarDataset(self.root, ids, self.point_cloud_range, self.voxel_size, self.split_dir,
                                 augment=train and self.augment, rotation=self.rotation, flip=self.flip,
                                 scale_range=self.scale_range, labelled=labelled)

    def setup(self, stage: str | None = None) -> None:
        if not self.generated:
            self.prepare_data()
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train", train=True)
            eval_set = self._dataset("train", train=False)
            eval_set.labelled = self.train_dataset.labelled  # type: ignore[attr-defined]
            eval_set.frame_ids = self.train_dataset.frame_ids  # type: ignore[attr-defined]
            self.train_eval_dataset = eval_set
        if stage in (None, "fit", "validate", "test", "predict") and self.val_dataset is None:
            self.val_dataset = self._dataset("val", train=False)
            self.test_dataset = self.predict_dataset = self.val_dataset
