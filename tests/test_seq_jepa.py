"""seq-JEPA: view sequences whose actions match the applied transformations, the aggregator's masking of the
held-out view's action, learning, the CLI recipe and the fidelity benchmark's smoke run."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_script
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from datamodules.views import ViewSequenceDataModule, ViewSequenceTransform
from jepa_lightning.cli import main as cli_main
from jepa_lightning.eval.equivariance import linear_accuracy, regression_r2
from jepa_lightning.methods.seq_jepa import SeqJEPA
from jepa_lightning.nn.resnet import SmallResNet

TINY = str(ROOT / "recipes" / "seq_jepa" / "tiny.yaml")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny per-view transforms: threads only contend
BILINEAR = v2.InterpolationMode.BILINEAR


def smooth_image(size: int = 32, channels: int = 3) -> torch.Tensor:
    """A smooth test image in [0.1, 0.9] (sums of Gaussian blobs), so interpolation errors stay small."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = torch.zeros(channels, size, size)
    for c in range(channels):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=g) - 0.5).tolist()
            img[c] += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.3)
    img = img - img.amin((1, 2), keepdim=True)
    return 0.1 + 0.8 * img / img.amax((1, 2), keepdim=True)


def views_of(kind: str, image: torch.Tensor, m: int = 6, **ranges) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Views (un-normalized) and action vectors of one transformation kind alone."""
    t = ViewSequenceTransform("transforms", [kind], mean=(0.0,), std=(1.0,), **ranges)
    torch.manual_seed(1)
    out = t(image, m)
    return out["views"], out["actions"], t.action_names


def test_rotation_action_round_trip():
    img = smooth_image()
    views, actions, names = views_of("rotation", img)
    assert names == ["angle"]
    yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    disk = (yy ** 2 + xx ** 2) < 12 ** 2                       # stays inside the image under any rotation
    for v, a in zip(views, actions):
        back = TF.affine(v, angle=-180.0 * float(a[0]), translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0],
                         interpolation=BILINEAR)
        assert (back - img)[:, disk].abs().mean() < 0.02
        # the wrong inverse (the opposite angle) does not restore the image
        wrong = TF.affine(v, angle=180.0 * float(a[0]), translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0],
                          interpolation=BILINEAR)
        if abs(float(a[0])) > 0.1:
            assert (wrong - img)[:, disk].abs().mean() > 0.04
    assert actions[:, 0].abs().max() <= 60 / 180 and actions[:, 0].std() > 0.05


def test_scale_and_translation_action_round_trip():
    img = smooth_image()
    views, actions, names = views_of("scale", img, scale=(0.8, 1.25))
    assert names == ["log_scale"]
    centre = (slice(None), slice(8, 24), slice(8, 24))          # inside the image under zooms of 0.8..1.25
    for v, a in zip(views, actions):
        back = TF.affine(v, angle=0.0, translate=[0.0, 0.0], scale=math.exp(-float(a[0])), shear=[0.0, 0.0],
                         interpolation=BILINEAR)
        assert (back - img)[centre].abs().mean() < 0.03
    views, actions, names = views_of("translation", img, translation=(-0.2, 0.2))
    assert names == ["tx", "ty"]
    for v, a in zip(views, actions):
        tx, ty = float(a[0]) * 32, float(a[1]) * 32
        back = TF.affine(v, angle=0.0, translate=[-tx, -ty], scale=1.0, shear=[0.0, 0.0], interpolation=BILINEAR)
        assert (back - img)[:, 8:24, 8:24].abs().mean() < 0.03
        # the view is the image moved by (tx, ty) pixels: the pixel at (16, 16) went to (16 + ty, 16 + tx)
        assert torch.allclose(v[:, round(16 + ty), round(16 + tx)], img[:, 16, 16], atol=0.05)


def test_colour_and_crop_action_round_trip():
    img = 0.2 + 0.5 * smooth_image()         # in [0.25, 0.65]: no factor below clips, the inverse is exact
    views, actions, names = views_of("color", img, brightness=(0.7, 1.1), contrast=(0.7, 1.3),
                                     saturation=(0.6, 1.4), hue=(0.0, 0.0))
    assert names == ["brightness", "contrast", "saturation"]
    for v, a in zip(views, actions):
        b, c, s = (float(x) + 1.0 for x in a)
        x = v
        grey = TF.rgb_to_grayscale(x)            # saturation keeps the grey level: undo it first
        x = (x - (1 - s) * grey) / s
        x = (x - (1 - c) * TF.rgb_to_grayscale(x).mean()) / c  # contrast keeps the mean grey level
        x = x / b
        assert (x - img).abs().max() < 1e-4      # valid everywhere
        assert (v - img).abs().max() > 0.01 or (a.abs() < 0.02).all()
    img = smooth_image()
    views, actions, names = views_of("crop", img, crop_size=(0.5, 0.8))
    assert names == ["crop_top", "crop_left", "crop_size"]
    for v, a in zip(views, actions):
        top, left, side = (round(float(x) * 32) for x in a)
        assert 0 <= top and top + side <= 32 and 0 <= left and left + side <= 32 and 16 <= side <= 26
        back = TF.resize(v, [side, side], antialias=True)        # the crop box, restored from the view
        assert (back - img[:, top:top + side, left:left + side]).abs().mean() < 0.02


def test_relative_actions_and_saccades_and_batch_shapes():
    dm = ViewSequenceDataModule(image_size=16, seq_len=4, val_seq_len=5, batch_size=8,
                                transformations=["crop", "rotation", "scale", "translation", "color"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    a = dm.action_dim
    assert a == 9 and dm.action_names[:3] == ["crop_top", "crop_left", "crop_size"]
    assert batch["views"].shape == (8, 4, 3, 16, 16) and batch["actions"].shape == (8, 4, a)
    assert batch["rel_actions"].shape == (8, 3, a) and batch["label"].shape == (8,)
    assert torch.allclose(batch["rel_actions"], batch["actions"].diff(dim=1))
    val = next(iter(dm.val_dataloader()))
    assert val["views"].shape == (8, 5, 3, 16, 16)
    assert torch.equal(val["views"], next(iter(dm.val_dataloader()))["views"])   # fixed evaluation sequences
    # saccades: glimpses at fixations; the action is the fixation centre, the relative action the eye movement
    t = ViewSequenceTransform("saccades", glimpse_size=8, mean=(0.0,), std=(1.0,))
    img = smooth_image(24)
    torch.manual_seed(3)
    out = t(img, 5)
    assert out["views"].shape == (5, 3, 8, 8) and t.action_names == ["fix_y", "fix_x"]
    for v, (fy, fx) in zip(out["views"], out["actions"]):
        top, left = round(float(fy) * 24 - 4), round(float(fx) * 24 - 4)
        assert torch.equal(v, img[:, top:top + 8, left:left + 8])
    assert torch.allclose(out["rel_actions"], out["actions"][1:] - out["actions"][:-1])
    with pytest.raises(ValueError, match="glimpse_size=40 must be <= image_size=32"):
        ViewSequenceDataModule(mode="saccades", glimpse_size=40, image_size=32)
    with pytest.raises(ValueError, match=r"transformations must be distinct names.*'shear'"):
        ViewSequenceTransform("transforms", ["shear"])


def tiny_model(use_actions: bool = True, action_dim: int = 6, **kwargs) -> SeqJEPA:
    torch.manual_seed(0)
    return SeqJEPA(SmallResNet(widths=(8, 16), depths=(1, 1)), action_dim=action_dim, use_actions=use_actions,
                   action_embed_dim=8, agg_depth=2, agg_heads=4, predictor_hidden=32, **kwargs)


def test_aggregator_hides_the_held_out_action_and_the_predictor_uses_it():
    model = tiny_model()
    views, rel = torch.randn(6, 4, 3, 12, 12), torch.randn(6, 3, 6)
    z = model._encode_views(model.encoder, views[:, :3])
    s = model.aggregate(z, rel[:, :2])
    changed = rel.clone()
    changed[:, 2] = torch.randn(6, 6)       # the action to the held-out view (per sample: BN removes a shift)
    model.train()
    loss_a, _, agg_a = model.forward_loss(views, rel)[:3]
    loss_b, _, agg_b = model.forward_loss(views, changed)[:3]
    assert torch.allclose(agg_a, agg_b, atol=1e-6)               # not visible to the aggregator ...
    assert not torch.isclose(loss_a, loss_b)                      # ... only to the predictor
    assert torch.allclose(s, agg_a, atol=1e-6) and s.shape == (6, model.dim + 8)
    visible = rel.clone()
    visible[:, 0] = torch.randn(6, 6)       # an action between observed views is visible
    assert not torch.allclose(model.forward_loss(views, visible)[2], agg_a, atol=1e-4)
    # without action conditioning, actions change nothing
    plain = tiny_model(use_actions=False)
    assert torch.allclose(plain.forward_loss(views, rel)[0], plain.forward_loss(views, visible)[0])
    # gradients reach encoder, aggregator, predictor and action embedding, never the teacher
    loss_a.backward()
    assert model.encoder.stem[0].weight.grad is not None and model.agg_token.grad is not None
    assert model.action_embed[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    # evaluation: the aggregate of the first L views, as one token
    model.eval()
    enc = model.encode({"views": views, "rel_actions": rel})
    assert enc.shape == (6, 1, model.dim + 8)
    assert torch.allclose(model.aggregate_views(views, rel, 2), model.aggregate(
        model._encode_views(model.encoder, views[:, :2]), rel[:, :1]), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected relative actions of shape \(6, 2, 6\).*got \(6, 2, 4\)"):
        model.aggregate(z, rel[:, :2, :4])
    with pytest.raises(ValueError, match="not divisible by agg_heads=4"):
        SeqJEPA(SmallResNet(widths=(8,), depths=(1,)), action_dim=3, action_embed_dim=6, agg_heads=4)


def test_post_norm_aggregator_is_the_references_block():
    """agg_norm="post": torch's post-norm ReLU encoder layers (dropout in training only) and a final LayerNorm; the
    held-out action stays hidden from it as from the pre-norm aggregator."""
    model = tiny_model(agg_norm="post", agg_dropout=0.1)
    encoder, norm = model.aggregator
    layers = list(encoder.layers)
    assert len(layers) == 2 and isinstance(norm, torch.nn.LayerNorm)
    assert all(not layer.norm_first and layer.activation is F.relu and layer.dropout.p == 0.1 for layer in layers)
    views, rel = torch.randn(6, 4, 3, 12, 12), torch.randn(6, 3, 6)
    changed = rel.clone()
    changed[:, 2] = torch.randn(6, 6)
    model.eval()
    agg_a, agg_b = model.forward_loss(views, rel)[2], model.forward_loss(views, changed)[2]
    assert torch.allclose(agg_a, agg_b, atol=1e-6) and agg_a.shape == (6, model.dim + 8)
    assert torch.allclose(agg_a, model.forward_loss(views, rel)[2])          # eval: no dropout
    model.train()
    assert not torch.allclose(model.forward_loss(views, rel)[2], model.forward_loss(views, rel)[2])
    with pytest.raises(ValueError, match="agg_norm must be 'pre' or 'post', got 'mid'"):
        tiny_model(agg_norm="mid")
    with pytest.raises(ValueError, match="agg_dropout=0.1 applies to agg_norm='post' blocks only"):
        tiny_model(agg_dropout=0.1)


def test_target_norm_batch_uses_the_target_views_statistics():
    """target_norm="batch" (the reference's train-mode target ResNet): the target is the teacher with BatchNorm on
    the batch's statistics; its running statistics and eval mode are untouched. "running" uses the running ones."""
    views, rel = torch.randn(6, 4, 3, 12, 12) * 3 + 1, torch.randn(6, 3, 6)
    running, batch = tiny_model(), tiny_model(target_norm="batch")
    batch.load_state_dict(running.state_dict())
    before = {k: v.clone() for k, v in batch.teacher.state_dict().items() if "running" in k}
    t_running = running.forward_loss(views, rel).targets
    t_batch = batch.forward_loss(views, rel).targets
    by_hand = copy.deepcopy(batch.teacher.module).train()
    with torch.no_grad():
        expected = by_hand(views[:, 3])
    assert torch.allclose(t_batch, expected.mean(1) if expected.dim() == 3 else expected, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(t_running, running.teacher.module.eval()(views[:, 3]), atol=1e-5)
    assert not torch.allclose(t_batch, t_running, atol=1e-3)
    after = {k: v for k, v in batch.teacher.state_dict().items() if "running" in k}
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.training for m in batch.teacher.module.modules())  # back in eval mode
    with pytest.raises(ValueError, match="target_norm must be 'running' or 'batch', got 'group'"):
        tiny_model(target_norm="group")


def test_loss_decreases_and_evaluation_heads_learn():
    model = tiny_model(lr=3e-3)
    dm = ViewSequenceDataModule(image_size=12, seq_len=3, batch_size=32, seed=0)
    dm.setup("fit")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    model.train()
    loader = iter(dm.train_dataloader())
    for _ in range(10):
        batch = next(loader)
        loss = model.objective(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.teacher.update(model.encoder, 0.9)
        losses.append(float(loss))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    # the evaluation heads: separable classes are classified, a smooth function regressed
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 8, generator=g), torch.randint(0, 3, (400,), generator=g)
    x[torch.arange(400), y] += 3.0
    assert linear_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.8
    t = torch.stack([x[:, 0] * x[:, 1], torch.sin(x[:, 2])], 1)
    assert regression_r2(x[:300], t[:300], x[300:], t[300:], steps=400, hidden=64) > 0.5
    assert regression_r2(x[:300], torch.randn(300, 2, generator=g), x[300:], torch.randn(100, 2, generator=g),
                         steps=100, hidden=16) < 0.1


def test_cli_fit_and_validate_tiny_recipe(tmp_path):
    common = ["--config", TINY, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
              "--data.init_args.image_size=12", "--model.init_args.encoder.init_args.widths=[8,16]",
              "--model.init_args.encoder.init_args.depths=[1,1]", "--model.init_args.agg_depth=1",
              "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1", "--data.init_args.val_fraction=0.9",
              "--trainer.callbacks.init_args.regression_steps=50"]
    cli_main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=6"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    cli_main(["validate", *common, f"--ckpt_path={ckpt}"])
    metrics = list((tmp_path / "runs").rglob("events.out.tfevents*"))
    assert metrics, "no TensorBoard events written"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in metrics:
        ea = EventAccumulator(str(f))
        ea.Reload()
        tags |= set(ea.Tags()["scalars"])
    assert {"train/target_std", "val/agg_linear_acc", "val/equivariance_r2", "val/probe_acc"} <= tags, tags


def test_benchmark_quick_smoke():
    """The rotations setting (the 3DIEBench stand-in), one seed, 4 steps of a tiny network per arm: the result in
    the common schema (written to the benchmark's cache, never over benchmarks/results)."""
    out = run_script("benchmarks/fidelity/seq_jepa.py", "--quick", "--fresh")
    assert out["name"] == "seq_jepa_rotations_quick" and out["seeds"] == [0] and out["config"]["steps"] == [4]
    probes = {p["name"]: p for p in out["probes"]}
    assert set(probes) == {"aggregate_linear_3", "encoder_linear_1", "equivariance_r2"}
    for probe in probes.values():
        assert set(probe["scores"]) == {"random_init", "pretrained", "no_actions"}
    assert all(0 <= v <= 100 for v in probes["aggregate_linear_3"]["scores"]["pretrained"])
    assert all(v <= 1 for v in probes["equivariance_r2"]["scores"]["no_actions"])
    assert len(out["claims"]) == 6 and all(isinstance(c["holds"], bool) for c in out["claims"])
    assert "seed by seed" in out["claims"][1]["statement"]  # the paired R^2 claim beside the unpaired one
    assert set(out["monitors"]) == {"with_actions_s0", "no_actions_s0"}
    assert out["monitors"]["with_actions_s0"]["train/loss"]


class _LabelLeakingModel(torch.nn.Module):
    """A stub evaluated like SeqJEPA: its per-view features carry the label (stored in the views' first pixel),
    its aggregate is noise, so only the encoder probe can classify."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def view_features(self, views: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(views[:, :, 0, 0, 0].long(), 4).float()   # [B, K, 4]
        return onehot + 0.3 * views[:, :, 1, :2, 0].repeat(1, 1, 2)   # + per-view noise

    def aggregate_views(self, views: torch.Tensor, rel_actions: torch.Tensor, seq_len: int) -> torch.Tensor:
        return torch.randn(views.shape[0], 6, generator=torch.Generator().manual_seed(int(views.sum()) % 1000))


def test_encoder_view_probes_read_the_encoder_outputs():
    from jepa_lightning.eval.equivariance import collect, evaluate

    g = torch.Generator().manual_seed(0)

    def batches(n: int) -> list[dict[str, torch.Tensor]]:
        out = []
        for _ in range(n):
            label = torch.randint(0, 4, (32,), generator=g)
            views = torch.randn(32, 4, 2, 3, 3, generator=g)
            views[:, :, 0, 0, 0] = label[:, None].float()
            out.append({"views": views, "rel_actions": torch.randn(32, 3, 2, generator=g), "label": label})
        return out

    train, val = batches(8), batches(4)
    model = _LabelLeakingModel()
    got = collect(model, val, (1, 3), encoder_views=True)
    z = torch.cat([model.view_features(b["views"]) for b in val])
    assert torch.allclose(got["view_mean_1"], z[:, 0]) and torch.allclose(got["view_mean_3"], z[:, :3].mean(1))
    assert got["pair"].shape == (256, 8) and got["rel"].shape == (256, 2)   # pairs (1, 2) and (2, 3) of 128
    assert torch.allclose(got["pair"].view(128, 2, 8)[:, 1], z[:, 1:3].flatten(1))
    assert torch.allclose(got["rel"].view(128, 2, 2), torch.cat([b["rel_actions"][:, :2] for b in val]))
    short = collect(model, val, (1, 3))   # without encoder_views: views 1 and 2 only
    assert short["pair"].shape == (128, 8) and "view_mean_1" not in short
    res = evaluate(model, train, val, (1, 3), regression_steps=20, encoder_views=True)
    assert set(res) == {"agg_linear_acc_1", "agg_linear_acc_3", "encoder_linear_acc_1", "encoder_linear_acc_3",
                        "equivariance_r2"}
    assert res["encoder_linear_acc_1"] > 0.9 and res["encoder_linear_acc_3"] > 0.9
    assert res["agg_linear_acc_3"] < 0.5   # the noise aggregate stays near chance (0.25)
