"""The LiDAR DataModule of AD-L-JEPA pretraining and detection: a KITTI-layout folder, or the embedded simulated
set generated into a cache folder on first use, as batches of BEV grids, points and boxes.

:class:`KittiLidarDataset` reads the frames of a split (an unreadable frame is skipped and reported with the
offending file's name, :class:`~datamodules.common.SkipUnreadable`), crops them to the point cloud range and
augments the training split; :func:`collate_lidar` pads a batch and voxelizes it at once; :class:`LidarDataModule`
holds the splits, the label fraction and the simulator's parameters.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ..common import SKIPPED_KEY, JEPADataModule, Skipped, SkipUnreadable, embedded_root, generate_once
from .geometry import augment_scene, grid_size, in_range, voxelize, voxelize_batch
from .kitti import CLASS_NAMES, read_kitti_frame, read_split
from .simulate import LidarSensor, generate_lidar_dataset

_LIDAR_VERSION = 1  # hashed into the embedded set's cache folder: bump it when the simulator's output changes


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

    ``root`` is a KITTI-layout folder (see :mod:`~datamodules.lidar.kitti`); ``None`` uses the embedded simulated set,
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
