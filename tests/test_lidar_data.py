"""LiDAR data for AD-L-JEPA: KITTI reader/writer, voxelization, augmentation, simulator, DataModule."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.common import SkippedSampleWarning
from datamodules.lidar import (
    LidarDataModule,
    LidarSensor,
    augment_scene,
    default_calib,
    grid_size,
    points_in_boxes,
    read_kitti_frame,
    simulate_scene,
    voxelize,
    voxelize_batch,
    write_kitti_frame,
)

RANGE = (0.0, -20.0, -2.0, 40.0, 20.0, 1.0)
VOXEL = (0.25, 0.25, 0.5)
SMALL = {"num_train_scenes": 8, "num_val_scenes": 4, "azimuth_steps": 384, "batch_size": 4}


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory) -> str:
    """A small simulated KITTI-layout set (generated once for the module)."""
    dm = LidarDataModule(cache_dir=str(tmp_path_factory.mktemp("lidar_cache")), **SMALL)
    dm.prepare_data()
    assert dm.generation_counts is not None and dm.generation_counts["train"] == 8
    return dm.root


def angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


# ------------------------------------------------------------------------------------------------ reader
def test_kitti_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(0, 10, (500, 4)).astype(np.float32)
    boxes = np.column_stack([rng.uniform(2, 60, 6), rng.uniform(-20, 20, 6), rng.uniform(-1.5, 0, 6),
                             rng.uniform(0.5, 5, (6, 3)), rng.uniform(-np.pi, np.pi, 6)])
    labels = np.array([0, 1, 2, 0, 1, 2])
    write_kitti_frame(str(tmp_path), "000007", points, boxes, labels, default_calib())
    with open(tmp_path / "training" / "label_2" / "000007.txt", "a") as f:  # other classes are dropped
        f.write("DontCare -1 -1 -10 10.0 20.0 30.0 40.0 -1 -1 -1 -1000 -1000 -1000 -10\n")
        f.write("Van 0.00 0 0.1 1 2 3 4 2.0 1.8 4.5 1.0 1.6 20.0 0.3\n")
    p2, b2, l2 = read_kitti_frame(str(tmp_path), "000007")
    np.testing.assert_array_equal(p2, points)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_allclose(b2[:, :6], boxes[:, :6], atol=1e-4)
    assert angle_diff(b2[:, 6], boxes[:, 6]).max() < 1e-4


def test_kitti_label_conversion_by_hand(tmp_path: Path) -> None:
    """OpenPCDet's convention on a hand-made line: bottom centre -> centre, (h, w, l) -> (dz, dy, dx),
    heading = -rotation_y - pi / 2; camera (x, y, z) = (-y_lidar, -z_lidar - 0.08, x_lidar - 0.27)."""
    write_kitti_frame(str(tmp_path), "000000", np.zeros((1, 4), np.float32), np.zeros((0, 7)), np.zeros(0),
                      default_calib())
    (tmp_path / "training" / "label_2" / "000000.txt").write_text(
        "Pedestrian 0.00 0 0.0 0 0 0 0 1.5 1.6 3.9 2.0 1.65 10.0 0.0\n")
    _, boxes, labels = read_kitti_frame(str(tmp_path), "000000")
    np.testing.assert_allclose(boxes, [[10.27, -2.0, -1.73 + 0.75, 3.9, 1.6, 1.5, -math.pi / 2]], atol=1e-9)
    assert labels.tolist() == [1]


def test_truncated_bin_and_bad_label_are_skipped_and_named(sim_root: str, tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    shutil.copytree(sim_root, root)
    train_ids = (root / "ImageSets" / "train.txt").read_text().split()
    bad_bin = root / "training" / "velodyne" / f"{train_ids[1]}.bin"
    bad_bin.write_bytes(bad_bin.read_bytes()[:-6])
    bad_label = root / "training" / "label_2" / f"{train_ids[2]}.txt"
    bad_label.write_text("Car 0.00 0 0.1 1 2 3\n")
    dm = LidarDataModule(root=str(root), augment=False, batch_size=4, drop_last=False)
    dm.setup("fit")
    frames = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in dm.train_eval_dataloader():
            batch = dm.on_before_batch_transfer(batch, 0)
            frames += batch["frame"]
    assert sorted(frames) == sorted(set(train_ids) - {train_ids[1], train_ids[2]})
    assert set(dm.skipped_files) == {str(bad_bin), str(bad_label)}
    assert "not a multiple of 16" in dm.skipped_files[str(bad_bin)]
    assert "line 1" in dm.skipped_files[str(bad_label)]
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning))
    assert bad_bin.name in messages and bad_label.name in messages


# ---------------------------------------------------------------------------------------------- voxelize
def brute_force_bev(points: np.ndarray, pc_range, voxel) -> np.ndarray:
    nx, ny, nz = grid_size(pc_range, voxel)
    out = np.zeros((nz + 2, ny, nx))
    count = np.zeros((ny, nx))
    inten = np.zeros((ny, nx))
    for x, y, z, i in points.tolist():
        if not all(pc_range[a] <= c < pc_range[a + 3] for a, c in enumerate((x, y, z))):
            continue
        ix, iy, iz = (math.floor((c - pc_range[a]) / voxel[a]) for a, c in enumerate((x, y, z)))
        out[iz, iy, ix] = 1.0
        count[iy, ix] += 1
        inten[iy, ix] += i
    out[nz] = np.where(count > 0, inten / np.maximum(count, 1), 0.0)
    out[nz + 1] = np.log1p(count)
    return out


def test_voxelize_matches_brute_force_and_batches() -> None:
    g = torch.Generator().manual_seed(0)
    pc_range, voxel = (0.0, -4.0, -2.0, 8.0, 4.0, 1.0), (0.5, 0.5, 0.75)
    lo, hi = torch.tensor([-1.0, -5.0, -2.5]), torch.tensor([9.0, 5.0, 1.5])
    clouds = []
    for n in (3000, 1700):
        xyz = lo + (hi - lo) * torch.rand(n, 3, generator=g)
        xyz[:200] = torch.floor(xyz[:200] * 2) / 2  # points exactly on cell borders
        clouds.append(torch.cat([xyz, torch.rand(n, 1, generator=g)], 1))
    for pts in clouds:
        bev = voxelize(pts, pc_range, voxel)
        assert bev.shape == (4 + 2, 16, 16)
        np.testing.assert_allclose(bev.numpy(), brute_force_bev(pts.numpy(), pc_range, voxel), atol=1e-5)
    padded = torch.zeros(2, 3000, 4)
    padded[0], padded[1, :1700] = clouds[0], clouds[1]
    padded[1, 1700:, :3] = 1.0  # in range: must be ignored through num_points
    batched = voxelize_batch(padded, torch.tensor([3000, 1700]), pc_range, voxel)
    for b in range(2):
        torch.testing.assert_close(batched[b], voxelize(clouds[b], pc_range, voxel))


def test_range_crop_min_inclusive_max_exclusive() -> None:
    pts = torch.tensor([[0.0, -20.0, -2.0, 0.5],  # the range's minimum corner: in, voxel (0, 0, 0)
                        [40.0, 0.0, 0.0, 0.5],  # x == x_max: out
                        [39.99, 19.99, 0.99, 0.25],  # last voxel
                        [10.0, 20.0, 0.0, 0.5],  # y == y_max: out
                        [10.0, 0.0, -2.01, 0.5]])  # below z_min: out
    bev = voxelize(pts, RANGE, VOXEL)
    assert bev.shape == (8, 160, 160)
    assert bev[:6].sum() == 2 and bev[0, 0, 0] == 1 and bev[5, 159, 159] == 1
    assert bev[6, 159, 159] == pytest.approx(0.25) and bev[7, 0, 0] == pytest.approx(math.log(2))
    assert (bev[:, bev[7] == 0] == 0).all()


# -------------------------------------------------------------------------------------------- augmentation
def test_augmentation_keeps_points_in_their_boxes_and_is_seeded() -> None:
    points, boxes, _ = simulate_scene(np.random.default_rng(1), LidarSensor(azimuth_steps=512))
    points, boxes = torch.from_numpy(points), torch.from_numpy(boxes).float()
    before = points_in_boxes(points, boxes)
    assert before.sum() > 50
    headings = set()
    for seed in range(6):
        p, b = augment_scene(points, boxes, torch.Generator().manual_seed(seed))
        assert torch.equal(points_in_boxes(p, b), before)
        torch.testing.assert_close(p[:, 3], points[:, 3])
        headings.add(round(float(b[0, 6]), 4))
        p2, b2 = augment_scene(points, boxes, torch.Generator().manual_seed(seed))
        assert torch.equal(p, p2) and torch.equal(b, b2)
        scale = b[:, 3] / boxes[:, 3]
        assert ((scale > 0.95 - 1e-6) & (scale < 1.05 + 1e-6)).all()
    assert len(headings) == 6


# -------------------------------------------------------------------------------------------- simulator
def test_simulator_points_on_objects_and_beam_elevations() -> None:
    sensor = LidarSensor(range_noise=0.0, azimuth_steps=512)
    for seed in range(2):
        points, boxes, labels = simulate_scene(np.random.default_rng(seed), sensor)
        assert len(boxes) >= 5 and set(labels.tolist()) <= {0, 1, 2}
        assert (points_in_boxes(points, boxes).sum(1) >= 5).all()
        dims = {c: np.median(boxes[labels == c, 3:6], axis=0) for c in (0, 1) if (labels == c).any()}
        np.testing.assert_allclose(dims[0], (4.0, 1.7, 1.5), rtol=0.12)
        el = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
        beams = sensor.elevations()
        assert np.abs(el[:, None] - beams[None]).min(1).max() < 0.01
        hit_beams = np.abs(el[:, None] - beams[None]).argmin(1)
        assert len(np.unique(hit_beams)) == 32 and beams.max() == 3.0 and beams.min() == -25.0
        assert len(np.unique(np.round(np.diff(beams), 3))) > 10  # non-uniform spacing
        kept = len(points) / (sensor.num_beams * sensor.azimuth_steps)
        assert 0.6 < kept <= 0.95  # dropout + sky rays
        ground = np.abs(points[:, 2] + 1.73) < 1e-3
        assert ground.mean() > 0.2 and 0 <= points[:, 3].min() and points[:, 3].max() <= 1
        assert np.hypot(points[:, 0], points[:, 1]).max() <= 70.0


# ------------------------------------------------------------------------------------------- datamodule
def test_datamodule_batches(sim_root: str) -> None:
    cache = str(Path(sim_root).parent)
    dm = LidarDataModule(cache_dir=cache, **SMALL)
    assert dm.root == sim_root and dm.generated and dm.in_channels == 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    b = batch["bev"]
    assert b.shape == (4, 8, 160, 160) and b.dtype == torch.float32
    n = batch["num_points"]
    assert batch["points"].shape == (4, int(n.max()), 4) and n.dtype == torch.int64 and n.min() > 3000
    assert batch["boxes"].shape[:2] == batch["labels"].shape and batch["boxes"].shape[2] == 7
    assert (batch["labels"] >= 0).sum(1).min() >= 1 and batch["labels"].dtype == torch.int64
    pad = batch["labels"] == -1
    assert (batch["boxes"][pad] == 0).all()
    assert len(batch["frame"]) == 4 and batch["labelled"].all()
    torch.testing.assert_close(b, voxelize_batch(batch["points"], n, RANGE, VOXEL))
    val = next(iter(dm.val_dataloader()))
    assert val["bev"].shape == (4, 8, 160, 160)
    # the same epoch order and augmentation again, given the seed
    dm2 = LidarDataModule(cache_dir=cache, **SMALL)
    dm2.setup("fit")
    again = next(iter(dm2.train_dataloader()))
    assert again["frame"] == batch["frame"] and torch.equal(again["points"], batch["points"])


def test_label_fraction(sim_root: str) -> None:
    cache = str(Path(sim_root).parent)
    dm = LidarDataModule(cache_dir=cache, label_fraction=0.25, augment=False, **SMALL)
    dm.setup("fit")
    assert dm.labelled_frames is not None and len(dm.labelled_frames) == 2
    seen = {}
    for batch in dm.train_eval_dataloader():
        for i, frame in enumerate(batch["frame"]):
            seen[frame] = (bool(batch["labelled"][i]), int((batch["labels"][i] >= 0).sum()))
    assert len(seen) == 8
    assert all(n == 0 for lab, n in seen.values() if not lab)
    assert {f for f, (lab, _) in seen.items() if lab} == dm.labelled_frames
    only = LidarDataModule(cache_dir=cache, label_fraction=0.25, labelled_only=True, **{**SMALL, "batch_size": 2})
    only.setup("fit")
    assert set(only.train_dataset.frame_ids) == dm.labelled_frames  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="label_fraction"):
        LidarDataModule(cache_dir=cache, label_fraction=0.0)
