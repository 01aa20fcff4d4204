"""The embedded LiDAR data set: a LiDAR simulator that writes its frames in the KITTI layout (no download).

Simulator (:func:`simulate_scene`, :func:`generate_lidar_dataset`): a spinning multi-beam sensor (default 32 beams
at non-uniform elevations from -25 to +3 degrees, denser towards the horizon like an HDL-64's upper block, 1024
azimuth steps, 70 m range, 2 cm range noise, 5-10 % dropped returns, mounted 1.73 m above the ground) ray-cast
into a procedural street: ground (asphalt road, brighter sidewalks), buildings along both sides, poles, trees
(trunk cylinder + crown sphere), cars (body + cabin boxes, ~4.0 x 1.7 x 1.5 m) in lanes and parked at the curbs,
pedestrians (0.8 x 0.6 x 1.75) and cyclists (1.8 x 0.6 x 1.7). Every ray is intersected with every primitive at
once (slab method in each box's own frame, quadratic for cylinders and spheres); the nearest hit wins; the
intensity is the material's reflectivity times an incidence term. Objects with at least ``min_points`` (5) hits
inside their box are labelled. Frames are written in the KITTI layout (:mod:`~datamodules.lidar.kitti`), with an
idealised calibration (axis permutation plus KITTI's translation, ``R0_rect = I``) so that camera <-> LiDAR
conversion is exact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import _wrap, points_in_boxes
from .kitti import CLASS_NAMES, default_calib, write_kitti_frame


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
