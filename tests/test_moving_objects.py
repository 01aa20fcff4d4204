"""The embedded moving-objects videos: labels match the rendered content, one frame does not tell the motion,
the mp4 set and its DataModule."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import MovingObjectsDataModule
from datamodules.object_render import SceneSpec
from datamodules.video.object_motion import (
    OBJECT_MOTIONS,
    MotionSpec,
    main_object_paths,
    render_moving_objects,
)

BG = (0.1, 0.1, 0.1)


def centroids(video: torch.Tensor) -> torch.Tensor:
    """Centre of mass (x, y) per frame [F, 2] of the pixels that differ from the constant background."""
    fg = ((video.float() / 255 - torch.tensor(BG)).abs().sum(-1) > 0.05).float()  # [F, H, W]
    ys, xs = torch.meshgrid(torch.arange(fg.size(1)) + 0.5, torch.arange(fg.size(2)) + 0.5, indexing="ij")
    mass = fg.sum((1, 2))
    return torch.stack([(fg * xs).sum((1, 2)) / mass, (fg * ys).sum((1, 2)) / mass], 1)


def test_the_main_object_moves_as_its_label_says():
    spec = MotionSpec(scene=SceneSpec(objects_per_scene=(1, 1), main_scale=(0.18, 0.22), background=BG),
                      pan_speed=0.0)
    motion = torch.arange(8).repeat(4)
    out = render_moving_objects(32, frames=16, seed=1, motion=motion, spec=spec)
    travel = {"slow": [], "fast": []}
    for i, m in enumerate(motion.tolist()):
        direction, speed = OBJECT_MOTIONS[m].split("-")
        com = centroids(out["video"][i])
        axis, sign = {"right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}[direction]
        along = sign * (com[-1, axis] - com[0, axis])
        assert along > 5, (OBJECT_MOTIONS[m], com[:, axis])
        assert (sign * com[1:, axis].diff() > -0.5).all()                  # monotonic up to pixel rounding
        assert (com[:, 1 - axis] - com[0, 1 - axis]).abs().max() < 1.0     # the other coordinate stays
        travel[speed].append(float(along))
    # 64 px, centre range 32 px: slow covers 0.4 (x 0.9-1.1), fast 0.8 of it, so the two never overlap
    assert max(travel["slow"]) < 32 * 0.4 * 1.1 + 1 < 32 * 0.8 * 0.9 - 1 < min(travel["fast"])
    assert (out["shape"] == out["cls"][:, 0]).all()


def test_one_frame_does_not_tell_the_motion():
    g = torch.Generator().manual_seed(0)
    motion = torch.arange(8).repeat_interleave(3000)
    paths = main_object_paths(motion, 16, 16.0, 48.0, (0.4, 0.8), g)              # [N, F, 2]
    frame = paths[torch.arange(len(motion)), torch.randint(0, 16, (len(motion),), generator=g)]
    per_class = frame.view(8, 3000, 2)
    means, stds = per_class.mean(1), per_class.std(1)
    # the mean position is the same for every motion (the spread differs a little between speeds: 1 pixel)
    assert (means - means.mean(0)).abs().max() < 0.4
    assert (stds - stds.mean(0)).abs().max() < 1.0
    # while two frames tell it: the displacement's axis, sign and size give the label exactly
    d = paths[:, -1] - paths[:, 0]
    axis = d.abs().argmax(1)
    sign = d.gather(1, axis[:, None])[:, 0] < 0
    fast = d.abs().max(1).values > 32 * 0.6
    assert torch.equal(axis * 2 + sign.long() + 4 * fast.long(), motion)


def test_one_frame_pixels_do_not_tell_the_motion_but_two_do():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    out = render_moving_objects(480, frames=16, seed=2)
    video = out["video"].float().div(255).permute(0, 1, 4, 2, 3)                  # [N, F, 3, H, W]
    pooled = torch.nn.functional.avg_pool2d(video.flatten(0, 1), 8).reshape(480, 16, -1)  # 8x8x3 per frame
    pick = torch.randint(0, 16, (480,), generator=torch.Generator().manual_seed(0))
    one = pooled[torch.arange(480), pick].numpy()
    two = torch.cat([pooled[:, 0], pooled[:, -1] - pooled[:, 0]], 1).numpy()
    y = out["motion"].numpy()
    score = {name: cross_val_score(LogisticRegression(C=0.1, max_iter=2000), x, y, cv=4).mean()
             for name, x in (("one", one), ("two", two))}
    assert score["one"] < 0.125 + 0.06, score   # chance 12.5 %
    assert score["two"] > score["one"] + 0.05, score


def test_moving_objects_files_cache_and_batches(tmp_path):
    kw = dict(cache_dir=str(tmp_path), num_train=12, num_val=6, batch_size=4, num_workers=0, pin_memory=False)
    dm = MovingObjectsDataModule(**kw)
    dm.setup("fit")
    folder = Path(dm.data_dir)
    assert (folder / "params.json").is_file() and len(list((folder / "train").glob("*.mp4"))) == 12
    rows = list(csv.DictReader(open(folder / "train.csv")))
    expected = render_moving_objects(12, 16, seed=0, spec=dm.spec)
    assert [int(r["shape"]) for r in rows] == expected["shape"].tolist()
    assert [int(r["motion"]) for r in rows] == expected["motion"].tolist()
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 8, 64, 64) and torch.equal(batch["label"], batch["shape"])
    assert dm.num_classes == 10 and dm.label_names == ["label", "motion", "shape"]
    motion = MovingObjectsDataModule(label="motion", **kw)
    assert motion.data_dir == dm.data_dir and motion.num_classes == 8  # same videos, other label
    motion.setup("validate")
    val = next(iter(motion.val_dataloader()))
    assert torch.equal(val["label"], val["motion"]) and val["video"].shape == (4, 3, 8, 64, 64)


@pytest.mark.parametrize("kw, message", [
    ({"label": "colour"}, "label must be one of"),
    ({"image_size": 63}, "image_size must be an even number"),
    ({"travel": (0.5, 0.55)}, "travel (slow, fast) must satisfy"),
    ({"main_range": (0.7, 0.3)}, "main_range must satisfy"),
    ({"num_train": 0}, "num_train must be an integer >= 1"),
])
def test_bad_arguments_name_the_value(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MovingObjectsDataModule(cache_dir=str(tmp_path), **kw)


def test_motion_names_are_the_label_order():
    assert OBJECT_MOTIONS[:4] == ("right-slow", "left-slow", "down-slow", "up-slow") and len(OBJECT_MOTIONS) == 8
    assert np.unique([m.split("-")[0] for m in OBJECT_MOTIONS]).size == 4


def test_noise_backgrounds_pan_exactly_differ_per_video_and_keep_a_photographs_statistics():
    """The "noise" background: a fresh field per video, panned by a phase shift (an integer velocity moves every
    pixel by exactly that many pixels, wrapping), grey levels of a photograph's range; deterministic from the seed."""
    from datamodules.object_render import noise_backgrounds

    g = torch.Generator().manual_seed(0)
    velocity = torch.tensor([[2.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    bg = noise_backgrounds(3, 32, g, velocity, frames=4)
    assert bg.shape == (3, 4, 3, 32, 32) and 0 <= bg.min() and bg.max() <= 1
    unclamped = (bg > 0) & (bg < 1)
    for i, (dx, dy) in enumerate(velocity.long().tolist()):
        moved = torch.roll(bg[i, 0], shifts=(dy, dx), dims=(-2, -1))
        assert torch.allclose(moved[unclamped[i, 1]], bg[i, 1][unclamped[i, 1]], atol=1e-4)
    assert (bg[0, 0] - bg[1, 0]).abs().mean() > 0.05                  # another video, another field
    assert 0.05 < bg[:, 0].std((1, 2, 3)).min() and bg[:, 0].std((1, 2, 3)).max() < 0.35
    again = noise_backgrounds(3, 32, torch.Generator().manual_seed(0), velocity, frames=4)
    assert torch.equal(bg, again)


def test_moving_objects_render_over_noise_backgrounds():
    """Videos over noise backgrounds: the labels given are kept, over a still background only the main object's
    pixels change (its path does not depend on the background: test_the_main_object_moves_as_its_label_says), and
    every video has its own background."""
    noise = MotionSpec(scene=SceneSpec(objects_per_scene=(1, 1), main_scale=(0.18, 0.22), background_source="noise"),
                       pan_speed=0.0)
    out = render_moving_objects(8, frames=16, seed=2, motion=torch.arange(8), spec=noise)
    assert out["video"].shape == (8, 16, 64, 64, 3) and (out["motion"] == torch.arange(8)).all()
    for i in range(8):      # with a still background the only change between frames is the moving object
        changed = (out["video"][i, -1].float() - out["video"][i, 0].float()).abs().sum(-1) > 30
        assert changed.sum() > 20
    corner = out["video"][:, 0, :6, :6].float()                        # where no main object goes (centre range)
    assert (corner[0] - corner[1]).abs().mean() > 5
    with pytest.raises(ValueError, match="background_source"):
        SceneSpec(background_source="sky")
