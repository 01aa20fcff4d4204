"""AD-L-JEPA downstream detection: CenterPoint targets/losses/decoding, the BEVDetector module and the CLI recipes."""

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from datamodules.lidar import LidarDataModule
from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.bev_map import BEVMeanAP
from jepa_lightning.methods.adl_detection import BEVDetector
from jepa_lightning.methods.adl_jepa import ADLJEPA
from jepa_lightning.nn.bev import BEVEncoder, BEVPredictor
from jepa_lightning.nn.center_head import (
    CenterHead,
    center_targets,
    decode,
    focal_loss,
    gaussian_radius,
    regression_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "adl_jepa"
PCR = (0.0, -20.0, -2.0, 40.0, 20.0, 1.0)
VOXEL = (0.25, 0.25, 0.5)
S, HW = 8, (20, 20)                     # 160 x 160 voxels / 8 -> 20 x 20 feature cells of 2 m
SCENES = ["--data.init_args.num_train_scenes=8", "--data.init_args.num_val_scenes=4"]


def targets(boxes, labels, **kw):
    return center_targets(torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels), PCR, VOXEL, S, 3, HW, **kw)


def maps_from_targets(t: dict, num_classes: int = 3) -> dict:
    """Head outputs that encode the targets exactly: heatmap logits of the Gaussians, regression at centre cells."""
    B, h, w = t["heatmap"].size(0), *t["heatmap"].shape[2:]
    reg = torch.zeros(B, 8, h * w)
    for b in range(B):  # test helper only: write each valid object's 8 targets at its centre cell
        m = t["mask"][b]
        reg[b][:, t["indices"][b][m]] = t["targets"][b][m].T
    reg = reg.view(B, 8, h, w)
    return {"heatmap": torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6)), "offset": reg[:, :2], "z": reg[:, 2:3],
            "size": reg[:, 3:6], "heading": reg[:, 6:8]}


# ---------------------------------------------------------------------------------------------------- targets
def test_targets_peaks_radius_and_invalid_boxes():
    boxes = [[[10.3, 2.1, -1.0, 4.0, 1.7, 1.5, 0.3],       # car: cell (ix 5, iy 11)
              [20.9, -5.0, -1.0, 0.8, 0.6, 1.7, -2.5],     # pedestrian: cell (10, 7)
              [41.0, 0.0, -1.0, 4.0, 1.7, 1.5, 0.0],       # centre outside the grid (x >= 40)
              [5.0, 5.0, -1.0, 4.0, 1.7, 1.5, 0.0]],       # padding (label -1)
             [[1.0, -19.5, -0.5, 20.0, 14.0, 1.7, 0.0],    # cyclist label, huge box: larger radius
              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]]
    labels = [[0, 1, 0, -1], [2, -1, -1, -1]]
    t = targets(boxes, labels)
    assert t["mask"].tolist() == [[True, True, False, False], [True, False, False, False]]
    assert t["indices"][0, :2].tolist() == [11 * 20 + 5, 7 * 20 + 10] and t["indices"][1, 0] == 0 * 20 + 0
    heat = t["heatmap"]
    assert heat.shape == (2, 3, 20, 20)
    # peak 1 exactly at each valid centre, nowhere else; padding / out-of-grid boxes draw nothing
    assert heat[0, 0, 11, 5] == 1 and heat[0, 1, 7, 10] == 1 and heat[1, 2, 0, 0] == 1
    assert int(heat.eq(1).sum()) == 3 and heat[1, :2].sum() == 0 and heat[0, 2].sum() == 0
    # radius: CenterNet's from the size in cells, at least min_radius; a large box gets a larger one
    r_small = gaussian_radius(torch.tensor(1.7 / 2), torch.tensor(4.0 / 2), 0.1)
    r_big = gaussian_radius(torch.tensor(14.0 / 2), torch.tensor(20.0 / 2), 0.1)
    assert t["radius"][0, 0] == max(2, int(r_small)) == 2 and t["radius"][1, 0] == int(r_big) > 2
    # the Gaussian: sigma = (2r + 1) / 6, support |du|, |dv| <= r
    sigma = 5 / 6
    assert heat[0, 0, 11, 6] == pytest.approx(math.exp(-1 / (2 * sigma ** 2)), rel=1e-5)
    assert heat[0, 0, 13, 7] == pytest.approx(math.exp(-8 / (2 * sigma ** 2)), rel=1e-5)
    assert heat[0, 0, 14, 5] == 0 and heat[0, 0, 11, 8] == 0
    # regression targets: offset in the cell, z, log sizes, sin/cos; zero for invalid objects
    expect = [10.3 / 2 - 5, 22.1 / 2 - 11, -1.0, math.log(4.0), math.log(1.7), math.log(1.5), math.sin(0.3),
              math.cos(0.3)]
    assert t["targets"][0, 0].tolist() == pytest.approx(expect, abs=1e-5)
    assert t["targets"][0, 2:].abs().sum() == 0 and t["labels"][0].tolist() == [0, 1, -1, -1]


def test_overlapping_gaussians_take_the_max():
    a = [10.3, 2.1, -1.0, 4.0, 1.7, 1.5, 0.0]
    b = [13.1, 4.3, -1.0, 4.0, 1.7, 1.5, 0.0]
    both = targets([[a, b]], [[0, 0]])["heatmap"]
    only_a, only_b = targets([[a]], [[0]])["heatmap"], targets([[b]], [[0]])["heatmap"]
    assert torch.equal(both, torch.maximum(only_a, only_b))
    assert ((only_a > 0) & (only_b > 0)).any()          # they do overlap
    assert both.sum() < only_a.sum() + only_b.sum()      # max, not sum
    other_class = targets([[a, b]], [[0, 1]])["heatmap"]
    assert torch.equal(other_class[0, 0], only_a[0, 0]) and torch.equal(other_class[0, 1], only_b[0, 0])


def random_boxes(b=3, m=6, seed=0):
    """Boxes in distinct feature cells, headings in (-pi, pi), some padding."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.stack([torch.randperm(400, generator=g)[:m] for _ in range(b)])
    fx = (cells % 20).float() + torch.rand(b, m, generator=g)
    fy = (cells // 20).float() + torch.rand(b, m, generator=g)
    boxes = torch.stack([fx * 2.0 + PCR[0], fy * 2.0 + PCR[1], torch.rand(b, m, generator=g) * 2 - 1.5,
                         torch.rand(b, m, generator=g) * 4 + 0.5, torch.rand(b, m, generator=g) * 2 + 0.4,
                         torch.rand(b, m, generator=g) + 1.0, (torch.rand(b, m, generator=g) * 2 - 1) * 3.1], -1)
    labels = torch.randint(0, 3, (b, m), generator=g)
    labels[0, -2:] = -1
    return boxes, labels


def test_decode_of_targets_recovers_the_boxes():
    boxes, labels = random_boxes()
    t = center_targets(boxes, labels, PCR, VOXEL, S, 3, HW)
    dets = decode(maps_from_targets(t), PCR, VOXEL, S, max_objects=50, score_threshold=0.5)
    for i, det in enumerate(dets):
        valid = labels[i] >= 0
        assert len(det["boxes"]) == int(valid.sum())
        assert torch.allclose(det["scores"], torch.ones_like(det["scores"]), atol=1e-5)
        assert torch.equal(det["centers"], det["boxes"][:, :3])
        got = sorted(zip(det["boxes"].tolist(), det["labels"].tolist()))
        want = sorted(zip(boxes[i][valid].tolist(), labels[i][valid].tolist()))
        for (gb, gl), (wb, wl) in zip(got, want):
            assert gl == wl and gb == pytest.approx(wb, abs=1e-4)
    # without the offsets, centres are recovered to within a cell (2 m here)
    maps = maps_from_targets(t)
    maps["offset"] = torch.zeros_like(maps["offset"])
    det = decode(maps, PCR, VOXEL, S, score_threshold=0.5)[1]
    for c in det["centers"]:
        d = (boxes[1, :, :2] - c[:2]).abs()
        assert ((d >= 0) & (d < 2.0)).all(-1).any()
    # the detections feed BEVMeanAP directly: a perfect mAP
    metric = BEVMeanAP()
    metric.update(dets, [{"centers": b[:, :2], "labels": lab} for b, lab in zip(boxes, labels)])
    assert float(metric.compute()["map"]) == pytest.approx(1.0)


def test_decode_picks_local_peaks_top_k_and_threshold():
    heat = torch.full((1, 2, 6, 6), -10.0)
    heat[0, 0, 2, 2], heat[0, 0, 2, 3] = 3.0, 2.0     # a neighbour of a stronger peak: suppressed
    heat[0, 1, 5, 5], heat[0, 0, 0, 5] = 1.0, -1.0   # sigmoid 0.73 and 0.27
    maps = {"heatmap": heat, "offset": torch.full((1, 2, 6, 6), 0.5), "z": torch.zeros(1, 1, 6, 6),
            "size": torch.zeros(1, 3, 6, 6), "heading": torch.cat([torch.zeros(1, 1, 6, 6), torch.ones(1, 1, 6, 6)], 1)}
    det = decode(maps, PCR, VOXEL, S, score_threshold=0.2)[0]
    assert det["labels"].tolist() == [0, 1, 0]
    assert det["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(v)).item() for v in (3.0, 1.0, -1.0)])
    assert det["boxes"][0].tolist() == pytest.approx([5.0, -15.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert len(decode(maps, PCR, VOXEL, S, score_threshold=0.5)[0]["boxes"]) == 2
    assert len(decode(maps, PCR, VOXEL, S, max_objects=1, score_threshold=0.0)[0]["boxes"]) == 1


# ----------------------------------------------------------------------------------------------------- losses
def test_focal_loss_by_hand():
    target = torch.tensor([1.0, 0.5, 0.0, 1.0])
    p = torch.tensor([0.8, 0.3, 0.1, 0.6])
    pos = math.log(0.8) * 0.2 ** 2 + math.log(0.6) * 0.4 ** 2
    neg = math.log(0.7) * 0.3 ** 2 * 0.5 ** 4 + math.log(0.9) * 0.1 ** 2
    assert focal_loss(torch.logit(p), target).item() == pytest.approx(-(pos + neg) / 2, rel=1e-5)
    # no positives: the negative part alone (normalised by 1); a perfect prediction costs ~0
    assert focal_loss(torch.logit(p[1:3]), target[1:3]).item() == pytest.approx(-neg, rel=1e-5)
    assert focal_loss(torch.tensor([20.0, -20.0]), torch.tensor([1.0, 0.0])).item() < 1e-6


def test_regression_loss_by_hand():
    pred = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[5.0, 5.0], [9.0, 9.0]]])
    target = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[5.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False], [True, False]])
    # valid objects: |1, 2| and |0, 1| -> per channel sums (1, 3); weights (2, 1) -> (2 + 3) / 2 objects
    assert regression_loss(pred, target, mask, (2.0, 1.0)).item() == pytest.approx(2.5)
    assert regression_loss(pred, target, mask).item() == pytest.approx(2.0)
    assert regression_loss(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_head_shapes_and_prior():
    head = CenterHead(16, num_classes=3, head_dim=8)
    out = head(torch.randn(2, 16, 5, 7))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "heatmap": (2, 3, 5, 7), "offset": (2, 2, 5, 7), "z": (2, 1, 5, 7), "size": (2, 3, 5, 7),
        "heading": (2, 2, 5, 7)}
    assert head.branches["heatmap"][-1].bias.tolist() == pytest.approx([-2.19] * 3)


# ---------------------------------------------------------------------------------------------------- module
def small_encoder(in_chans=8) -> BEVEncoder:
    return BEVEncoder(in_chans, embed_dim=32, widths=(16, 32, 32), downsample=8, blocks_per_stage=1)


def detector(**kw) -> BEVDetector:
    torch.manual_seed(0)
    return BEVDetector(kw.pop("encoder", None) or small_encoder(), head_dim=32, **kw)


def test_unlabelled_frames_add_no_loss():
    boxes, labels = random_boxes(2, 4, seed=1)
    model = detector().eval()                           # eval: no BatchNorm coupling between frames
    bev = torch.rand(2, 8, 160, 160)
    batch = {"bev": bev, "boxes": boxes, "labels": labels, "labelled": torch.tensor([True, False])}
    parts, n = model.training_loss(batch)
    moved = {**batch, "boxes": boxes.flip(0), "labels": labels.flip(0).clone()}
    moved["boxes"][0], moved["labels"][0] = boxes[0], labels[0]      # frame 1's objects changed
    assert n == 1 and model.training_loss(moved)[0]["loss"].item() == pytest.approx(parts["loss"].item())
    alone = model.losses(model(bev[:1]), boxes[:1], labels[:1])["loss"]
    assert parts["loss"].item() == pytest.approx(alone.item(), rel=1e-5)
    assert parts["loss"] > 0 and parts["loss_box"] > 0
    none, n = model.train().training_loss({**batch, "labelled": torch.tensor([False, False])})
    assert n == 0 and none["loss"].item() == 0.0
    none["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.abs().sum() == 0 for g in grads)


def test_encoder_from_adl_jepa_checkpoint_and_wrong_key(tmp_path):
    torch.manual_seed(0)
    pre = ADLJEPA(small_encoder(), BEVPredictor(32, depth=1))
    with torch.no_grad():                              # teacher != encoder, as after EMA training
        for p in pre.teacher.parameters():
            p.add_(1.0)
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": pre.state_dict()}, path)
    teacher = {k.removeprefix("teacher.module."): v for k, v in pre.state_dict().items() if k.startswith("teacher.")}
    model = detector(checkpoint=str(path))
    got = model.encoder.state_dict()
    assert got.keys() == teacher.keys() and all(torch.equal(got[k], teacher[k]) for k in got)
    from_encoder = detector(checkpoint=str(path), checkpoint_key="encoder").encoder.state_dict()
    assert all(torch.equal(from_encoder[k], v) for k, v in pre.encoder.state_dict().items())
    with pytest.raises(KeyError, match="no weights under prefix 'student.'.*teacher"):
        detector(checkpoint=str(path), checkpoint_key="student")
    frozen = detector(checkpoint=str(path), freeze_encoder=True).train()
    assert not frozen.encoder.training and not any(p.requires_grad for p in frozen.encoder.parameters())


class _Grid(pl.LightningDataModule):
    def __init__(self, point_cloud_range, voxel_size):
        super().__init__()
        self.point_cloud_range, self.voxel_size, self.in_channels = point_cloud_range, voxel_size, 8

    def train_dataloader(self):
        batch = {"bev": torch.zeros(1, 8, 160, 160), "boxes": torch.zeros(1, 0, 7),
                 "labels": torch.zeros(1, 0, dtype=torch.long)}
        return torch.utils.data.DataLoader([batch], batch_size=None)


@pytest.mark.parametrize("grid", [((0.0, -20.0, -2.0, 40.0, 20.0, 2.0), VOXEL), (PCR, (0.2, 0.2, 0.5))])
def test_grid_mismatch_with_the_datamodule_is_an_error(grid, tmp_path):
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    name = "point_cloud_range" if grid[1] == VOXEL else "voxel_size"
    with pytest.raises(ValueError, match=f"model.init_args.{name}=.*data.init_args.{name}="):
        trainer.fit(detector(), datamodule=_Grid(*grid))


class _Record(pl.Callback):
    def __init__(self):
        self.lr, self.beta1 = [], []

    def on_train_batch_start(self, trainer, *args):
        group = trainer.optimizers[0].param_groups[0]
        self.lr.append(group["lr"])
        self.beta1.append(group["betas"][0])


def test_one_cycle_schedule_per_optimizer_step(tmp_path):
    record = _Record()
    trainer = pl.Trainer(max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[record],
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(detector(lr=1e-3), datamodule=_Grid(PCR, VOXEL))
    lr, beta1 = torch.tensor(record.lr), torch.tensor(record.beta1)
    assert len(lr) == 20 and lr[0] == pytest.approx(1e-4) and lr.max() == pytest.approx(1e-3, rel=1e-3)
    assert int(lr.argmax()) == 7 and bool((lr[:8].diff() > 0).all() and (lr[7:].diff() < 0).all())
    assert lr[-1] < 1e-5 and beta1[0] == pytest.approx(0.95) and beta1.min() == pytest.approx(0.85, abs=1e-3)
    assert torch.allclose((lr[:8] - 1e-4) / 9e-4, (0.95 - beta1[:8]) / 0.1, atol=0.02)  # beta1 mirrors the rise


@pytest.fixture(scope="module")
def lidar_cache(tmp_path_factory):
    """8 + 4 simulated frames, generated once for this module (the CLI test reuses them through cache_dir)."""
    cache = tmp_path_factory.mktemp("lidar_cache")
    dm = LidarDataModule(num_train_scenes=8, num_val_scenes=4, cache_dir=str(cache), augment=False, batch_size=4)
    dm.prepare_data()
    return cache, dm


def test_detector_overfits_a_few_simulated_frames(lidar_cache):
    _, dm = lidar_cache
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = detector()
    metric = BEVMeanAP(distance_thresholds=(1.0, 2.0))

    def score() -> float:
        metric.reset()
        metric.update(model.detect(batch["bev"]), BEVDetector._targets(batch))
        return float(metric.compute()["map"])

    before = score()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        opt.zero_grad()
        loss = model.training_loss(batch)[0]["loss"]
        loss.backward()
        opt.step()
    after = score()
    print("overfit mAP", before, after)
    assert before < 0.05 and after > 0.6, (before, after)


# --------------------------------------------------------------------------------------------------------- CLI
def test_cli_pretrain_then_detect_fit_and_validate(lidar_cache, tmp_path):
    cache, _ = lidar_cache
    common = [*SCENES, f"--data.init_args.cache_dir={cache}", "--data.init_args.batch_size=4",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              f"--run_dir={tmp_path / 'runs'}"]
    pre = JEPACLI(args=["fit", "--config", str(RECIPES / "pretrain_tiny.yaml"), *common, "--trainer.max_steps=2",
                        "--trainer.limit_val_batches=1", f"--checkpoint.dirpath={tmp_path / 'pre'}"])
    assert pre.trainer.global_step == 2 and (tmp_path / "pre" / "last.ckpt").is_file()
    det_args = ["--config", str(RECIPES / "detect_tiny.yaml"), *common, f"--checkpoint.dirpath={tmp_path / 'det'}",
                f"--model.init_args.checkpoint={tmp_path / 'pre' / 'last.ckpt'}", "--data.init_args.label_fraction=0.5"]
    fit = JEPACLI(args=["fit", *det_args, "--trainer.max_steps=2", "--trainer.check_val_every_n_epoch=1",
                        "--trainer.limit_val_batches=1"])
    assert fit.trainer.global_step == 2 and "train/loss_heatmap" in fit.trainer.callback_metrics
    ckpt = torch.load(tmp_path / "det" / "last.ckpt", weights_only=True)    # plain hyper-parameters only
    assert ckpt["hyper_parameters"]["checkpoint_key"] == "teacher"
    val = JEPACLI(args=["validate", *det_args, f"--ckpt_path={tmp_path / 'det' / 'last.ckpt'}"])
    metrics = val.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/map"]) <= 1.0
    assert {"val/ap/Car", "val/ap@2.0", "val/loss"} <= set(metrics)
