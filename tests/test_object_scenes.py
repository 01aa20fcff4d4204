"""Object scenes (renderer + DataModule), the supervised ceiling and the data-floor benchmark."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_script
from matplotlib.path import Path as Polygon

import datamodules.object_scenes as object_scenes
from datamodules import ObjectScenesDataModule
from datamodules.object_render import NUM_SHAPES, SHAPES, SceneSpec, render_object_scenes, shape_gains
from jepa_lightning.methods import SupervisedClassifier
from jepa_lightning.nn import VisionTransformer

GREY = (0.5, 0.5, 0.5)
SMALL = {"image_size": 32, "num_train": 48, "num_val": 24, "batch_size": 16}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ------------------------------------------------------------------------------------------ renderer
def _star() -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        r, a = (1.0, i * math.pi / 5) if i % 2 == 0 else (0.45, i * math.pi / 5)
        pts.append((r * math.sin(a), r * math.cos(a)))  # angle from +v
    return pts


def _circle(r: float, n: int = 96) -> list[tuple[float, float]]:
    return [(r * math.cos(2 * math.pi * i / n), r * math.sin(2 * math.pi * i / n)) for i in range(n)]


# The shapes as polygons in canonical coordinates (v up), written independently of the renderer's implicit tests.
POLYGONS = {
    "disk": _circle(1.0),
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, 1.0), (-math.sqrt(3) / 2, -0.5), (math.sqrt(3) / 2, -0.5)],
    "star": _star(),
    "cross": [(-0.3, 1), (0.3, 1), (0.3, 0.3), (1, 0.3), (1, -0.3), (0.3, -0.3), (0.3, -1), (-0.3, -1),
              (-0.3, -0.3), (-1, -0.3), (-1, 0.3), (-0.3, 0.3)],
    "bar": [(-1, -0.4), (1, -0.4), (1, 0.4), (-1, 0.4)],
    "L": [(-0.8, 1), (-0.2, 1), (-0.2, -0.4), (0.8, -0.4), (0.8, -1), (-0.8, -1)],
    "T": [(-1, 1), (1, 1), (1, 0.4), (0.3, 0.4), (0.3, -1), (-0.3, -1), (-0.3, 0.4), (-1, 0.4)],
    "arrow": [(-1, 0.22), (0.1, 0.22), (0.1, 0.6), (1, 0), (0.1, -0.6), (0.1, -0.22), (-1, -0.22)],
}


def _expected_mask(name: str, objects: dict, i: int, size: int) -> np.ndarray:
    """Rasterize shape ``name`` with scene ``i``'s slot-0 pose (pixel centres inside the polygon)."""
    cls = SHAPES.index(name)
    cx, cy = objects["center"][i, 0].tolist()
    scale = float(objects["size"][i, 0] * shape_gains()[cls])
    a, th = float(objects["aspect"][i, 0]), float(objects["angle"][i, 0])
    sign = -1.0 if bool(objects["mirror"][i, 0]) else 1.0

    def to_pixels(pts):
        out = []
        for u, v in pts:
            ru, rv = sign * u * scale * a, v * scale / a
            dx, dy = math.cos(th) * ru - math.sin(th) * rv, math.sin(th) * ru + math.cos(th) * rv
            out.append((cx + dx, cy - dy))
        return Polygon(out)

    ys, xs = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], 1)
    if name == "ring":
        inside = to_pixels(_circle(1.0)).contains_points(centres) & ~to_pixels(_circle(0.55)).contains_points(centres)
    else:
        inside = to_pixels(POLYGONS[name]).contains_points(centres)
    return inside.reshape(size, size)


def test_each_shape_is_drawn_where_its_label_says():
    """One object per scene on a constant background: its pixels are exactly the labelled ones, and its mask is
    the shape's polygon at the reported pose (IoU > 0.9; only boundary pixels may differ)."""
    out = render_object_scenes(200, seed=3, image_size=64, objects_per_scene=(1, 1), background=GREY, textures=False)
    seg, img, obj = out["segmentation"], out["image"], out["objects"]
    is_bg = (img == torch.tensor(GREY).view(1, 3, 1, 1)).all(1)
    assert torch.equal(is_bg, seg == 0)
    for name in SHAPES:
        c = SHAPES.index(name)
        scenes = (obj["cls"][:, 0] == c).nonzero().flatten()
        assert len(scenes) >= 5, name
        for i in scenes[:5].tolist():
            got = (seg[i] == c + 1).numpy()
            assert got.sum() == (seg[i] > 0).sum()  # one object: only its class
            want = _expected_mask(name, obj, i, 64)
            iou = (got & want).sum() / (got | want).sum()
            assert iou > 0.9, (name, iou)
            assert torch.allclose(img[i][:, seg[i] > 0], obj["colour"][i, 0][:, None])  # solid colour


def test_shapes_have_equal_area():
    """Area carries no class information: every shape covers pi * size**2 (canonical, fine grid)."""
    t = (torch.arange(800) + 0.5) / 800 * 4 - 2
    v, u = torch.meshgrid(t, t, indexing="ij")
    from datamodules.object_render import shape_mask
    for c in range(NUM_SHAPES):
        g = float(shape_gains()[c])
        area = shape_mask(c, u / g, v / g).float().mean() * 16
        assert abs(area - math.pi) < 0.02 * math.pi, SHAPES[c]


def test_background_label_and_occlusion_exact_with_textures():
    """Textured, overlapping objects: background label exactly where the image is the background colour, and each
    labelled pixel carries the class of the top-most (latest drawn) object covering it."""
    out = render_object_scenes(64, seed=1, image_size=48, background=GREY, textures=True, with_masks=True)
    seg, obj = out["segmentation"], out["objects"]
    is_bg = (out["image"] == torch.tensor(GREY).view(1, 3, 1, 1)).all(1)
    assert torch.equal(seg == 0, is_bg)
    masks = obj["mask"]                                                              # [N, K, H, W]
    assert torch.equal(seg > 0, masks.any(1))
    top = torch.where(masks, obj["depth"][:, :, None, None], -1).argmax(1)          # top-most covering slot
    want = torch.where(masks.any(1), obj["cls"].gather(1, top.flatten(1)).view_as(top) + 1, 0)
    assert torch.equal(seg, want)
    assert (masks.sum(1) >= 2).any()  # objects do overlap
    assert torch.equal(obj["area"], masks.new_zeros(()).long() + (
        (top[:, None] == torch.arange(masks.size(1))[None, :, None, None]) & masks.any(1)[:, None]).sum((2, 3)))
    assert set(obj["texture"].flatten().tolist()) == {0, 1, 2, 3}


def test_label_is_the_largest_visible_object():
    out = render_object_scenes(600, seed=0, image_size=64)
    seg, obj = out["segmentation"], out["objects"]
    # visible pixels per slot match the reported areas; the main object (slot 0) is clearly the largest
    flat = seg.flatten(1)
    per_class = torch.zeros(len(seg), NUM_SHAPES + 1, dtype=torch.long).scatter_add_(1, flat, torch.ones_like(flat))
    per_class = per_class[:, 1:]
    assert torch.equal(out["label"], per_class.argmax(1))
    assert torch.equal(out["label"], obj["cls"][:, 0])
    others = obj["area"][:, 1:].max(1).values
    assert (obj["area"][:, 0] >= 1.5 * others).all()
    assert torch.equal(per_class.gather(1, out["label"][:, None])[:, 0], obj["area"][:, 0])
    assert (obj["cls"][:, 1:] != obj["cls"][:, :1]).all()  # distractors are of other classes
    # varied content: all classes, every object count
    assert set(out["label"].tolist()) == set(range(NUM_SHAPES))
    assert set(obj["present"].sum(1).tolist()) == {2, 3, 4}
    assert out["image"].shape == (600, 3, 64, 64) and out["image"].dtype == torch.float32
    assert 0 <= out["image"].min() and out["image"].max() <= 1 and out["segmentation"].dtype == torch.int64


def test_render_is_deterministic():
    a = render_object_scenes(20, seed=5, image_size=32)
    b = render_object_scenes(20, seed=5, image_size=32, chunk=7)  # chunking changes the draws' order, not a seed's
    c = render_object_scenes(20, seed=6, image_size=32)
    again = render_object_scenes(20, seed=5, image_size=32)
    for k in ("image", "segmentation", "label"):
        assert torch.equal(a[k], again[k])
    assert b["image"].shape == a["image"].shape
    assert not torch.equal(a["image"], c["image"])


@pytest.mark.parametrize("kwargs, name", [
    ({"main_scale": (0.3, 0.2)}, "main_scale"),
    ({"distractor_scale": (0.05, 0.2)}, "distractor_scale"),
    ({"objects_per_scene": (0, 2)}, "objects_per_scene"),
    ({"rotation": -5.0}, "rotation"),
    ({"background_contrast": 2.0}, "background_contrast"),
    ({"background_scale": (0.0, 0.5)}, "background_scale"),
    ({"background": (1.0, 2.0, 0.0)}, "background"),
    ({"image_size": 4}, "image_size"),
])
def test_bad_scene_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SceneSpec(**kwargs)
    if name != "background":  # (not a DataModule argument: it always uses photographs)
        with pytest.raises(ValueError, match=name):
            ObjectScenesDataModule(**kwargs)


def test_bad_datamodule_arguments(tmp_path):
    for kwargs, name in (({"num_train": 0}, "num_train"), ({"crop_scale": (0.5, 1.5)}, "crop_scale"),
                         ({"std": (1.0, 0.0, 1.0)}, "std"), ({"num_train_eval": 0}, "num_train_eval")):
        with pytest.raises(ValueError, match=name):
            ObjectScenesDataModule(cache_dir=str(tmp_path), **kwargs)


# ---------------------------------------------------------------------------------------- DataModule
def test_batches_splits_and_cache(tmp_path, monkeypatch):
    dm = ObjectScenesDataModule(cache_dir=str(tmp_path), **SMALL)
    dm.setup("fit")
    assert dm.generation_seconds is not None and dm.num_classes == 10 and dm.num_segmentation_classes == 11
    assert dm.classes == list(SHAPES)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "segmentation"}
    assert batch["image"].shape == (16, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (16,) and batch["label"].dtype == torch.int64
    assert batch["segmentation"].shape == (16, 32, 32) and batch["segmentation"].dtype == torch.int64
    assert int(batch["segmentation"].max()) <= 10
    val = next(iter(dm.val_dataloader()))
    assert not torch.equal(dm.train_eval_dataset.images[:24], dm.val_dataset.images)  # independent streams
    assert dm.test_dataset is dm.val_dataset and val["image"].shape[1:] == (3, 32, 32)
    # the un-augmented training split in order: the rendered scenes, normalized
    first = next(iter(dm.train_eval_dataloader()))
    ref = render_object_scenes(48, seed=0, **asdict(dm.spec))
    x = (ref["image"][:16].mul(255).round() / 255 - 0.5) / 0.25
    assert torch.allclose(first["image"], x, atol=1e-5)
    assert torch.equal(first["segmentation"], ref["segmentation"][:16])
    assert torch.equal(first["label"], ref["label"][:16])
    # a second DataModule with the same arguments reads the cache instead of rendering
    monkeypatch.setattr(object_scenes, "render_object_scenes", lambda *a, **k: pytest.fail("rendered again"))
    again = ObjectScenesDataModule(cache_dir=str(tmp_path), **SMALL)
    again.setup()
    assert again.generation_seconds is None and again.data_dir == dm.data_dir
    assert torch.equal(again.val_dataset.images, dm.val_dataset.images)
    other = ObjectScenesDataModule(cache_dir=str(tmp_path), scene_seed=1, **SMALL)
    assert other.data_dir != dm.data_dir  # another seed: another cache entry
    # the probes may train on the first scenes only; pretraining still sees all (same rendered cache)
    few = ObjectScenesDataModule(cache_dir=str(tmp_path), num_train_eval=20, **SMALL)
    few.setup()
    assert few.data_dir == dm.data_dir and len(few.train_eval_dataset) == 20
    assert len(few.train_dataset) == len(dm.train_dataset) > 20
    assert torch.equal(few.train_eval_dataset.images, dm.train_eval_dataset.images[:20])
    more = ObjectScenesDataModule(cache_dir=str(tmp_path), num_train_eval=10**6, **SMALL)  # a recipe's 4000 when a
    more.setup()                                                                       # run asks for fewer scenes
    assert len(more.train_eval_dataset) == len(dm.train_dataset)


def test_joint_crop_keeps_image_and_mask_aligned():
    out = render_object_scenes(16, seed=2, image_size=48, background=GREY, textures=False)
    images = out["image"].mul(255).round().to(torch.uint8)
    crop = object_scenes.v2.Compose([object_scenes.v2.RandomResizedCrop(48, scale=(0.3, 0.6)),
                                     object_scenes.v2.RandomHorizontalFlip()])
    ds = object_scenes.ObjectScenesDataset(images, out["segmentation"].to(torch.uint8), out["label"], GREY, (1.0,) * 3,
                                           crop=crop)
    grey = torch.zeros(3, 1, 1)  # (0.5 - mean 0.5) / std 1
    for i in range(16):
        torch.manual_seed(i)
        s = ds[i]
        seg, img = s["segmentation"], s["image"]
        assert not torch.equal(seg, out["segmentation"][i])  # it was cropped
        # pixels whose 3x3 neighbourhood has a single label: background -> grey, object -> its solid colour
        pad = F.pad(seg[None, None].float(), (1, 1, 1, 1), mode="replicate")
        same = (F.max_pool2d(pad, 3, 1) == F.max_pool2d(-pad, 3, 1).neg())[0, 0]
        bg = same & (seg == 0)
        # (bilinear image vs nearest mask: up to a fraction of a pixel's mixing; a shifted mask would bring the
        # object colours, >= 0.35 away, onto such pixels)
        assert (img[:, bg] - grey.view(3, 1)).abs().max() < 0.1
        fg = same & (seg > 0)
        assert ((img[:, fg] - grey.view(3, 1)).norm(dim=0) > 0.25).all()


# ------------------------------------------------------------------------------------ supervised ceiling
def _tiny_vit(size: int = 32) -> VisionTransformer:
    return VisionTransformer(img_size=size, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def test_supervised_classifier_fits(tmp_path):
    L.seed_everything(0, verbose=False)
    dm = ObjectScenesDataModule(cache_dir=str(tmp_path), crop_scale=(0.9, 1.0), **{**SMALL, "num_train": 32})
    dm.setup()
    model = SupervisedClassifier(_tiny_vit(), num_classes=10, lr=3e-3, warmup=0.0)
    batch = next(iter(dm.train_eval_dataloader()))
    with torch.no_grad():
        before = F.cross_entropy(model(batch["image"]), batch["label"]).item()
    trainer = L.Trainer(max_epochs=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    with torch.no_grad():
        model.eval()
        after = F.cross_entropy(model(batch["image"]), batch["label"]).item()
    assert after < 0.7 * before
    for key in ("train/loss", "train/acc", "train/lr", "val/acc", "val/loss"):
        assert key in trainer.callback_metrics, key
    assert model.encode(batch).shape == (16, 16, 32)


def test_supervised_classifier_errors():
    with pytest.raises(ValueError, match="num_classes"):
        SupervisedClassifier(_tiny_vit(), num_classes=1)
    with pytest.raises(ValueError, match="embed_dim"):
        SupervisedClassifier(torch.nn.Linear(3, 3))
    model = SupervisedClassifier(_tiny_vit(), label_key="shape")
    with pytest.raises(KeyError, match="shape"):
        model._labels({"image": torch.zeros(1, 3, 32, 32), "label": torch.zeros(1)})


# ------------------------------------------------------------------------------------------- benchmark
def test_data_floor_quick():
    out = run_script("benchmarks/fidelity/data_floor.py", "--quick")
    run = out["per_seed"][0]
    for key in ("raw_pixels_linear", "random_vit_linear", "random_vit_knn", "supervised_val_acc",
                "patch_raw_linear_miou", "patch_random_vit_linear_miou", "patch_supervised_vit_linear_miou"):
        assert 0.0 <= run[key] <= 1.0, key
    assert set(out["criterion"]) == {"floor", "ceiling", "statement", "holds"}
