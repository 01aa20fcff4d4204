"""The KITTI object-benchmark format of LiDAR frames: its reader and writer (points, calibration, labels, split
lists).

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
unreadable calibration raises :class:`MalformedFile` naming the offending file; the dataset
(:class:`~datamodules.lidar.datamodule.KittiLidarDataset`) then skips the frame and reports that file
(:class:`~datamodules.common.SkipUnreadable`), never a crash.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .geometry import _wrap, box_corners

CLASS_NAMES = ("Car", "Pedestrian", "Cyclist")
_CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}


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
