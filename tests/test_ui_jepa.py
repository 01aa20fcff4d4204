"""UI-JEPA pretraining: temporal (hyper-frame) masks, the spatial + temporal objective, the tiny recipe."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT

from jepa_lightning.masks import MultiBlockMask3D, TemporalMask, step_generator
from jepa_lightning.methods import UIJEPA, VJEPA, ui_jepa_masks
from jepa_lightning.methods.ui_jepa import spatial_masks
from jepa_lightning.nn import TransformerPredictor, VisionTransformer


# ------------------------------------------------------------------------------------------ TemporalMask
@pytest.mark.parametrize("grid", [(8, 12, 6), (2, 3, 3), (5, 2, 4)])
def test_temporal_mask_masks_whole_hyper_frames(grid):
    T, H, W = grid
    m = TemporalMask(masked=(0.25, 0.5))
    masks = m(16, grid, generator=step_generator(0, 0, 3))
    ctx, tgt = masks.context, masks.targets[:, 0]
    assert tgt.shape[0] == ctx.shape[0] == 16 and tgt.shape[1] + ctx.shape[1] == T * H * W
    k = tgt.shape[1] // (H * W)
    assert tgt.shape[1] == k * H * W and 1 <= k <= T - 1
    for c, t in zip(ctx.tolist(), tgt.tolist()):
        assert sorted(c + t) == list(range(T * H * W)) and c == sorted(c) and t == sorted(t)
        slots = {i // (H * W) for i in t}
        assert len(slots) == k and not slots & {i // (H * W) for i in c}  # whole slots, never split


def test_temporal_mask_count_follows_the_range_and_slots_are_uniform():
    m = TemporalMask(masked=(0.25, 0.5))
    counts, hits = [], torch.zeros(8)
    for step in range(400):
        tgt = m(8, (8, 2, 2), generator=step_generator(1, 0, step)).targets[:, 0]
        counts.append(tgt.shape[1] // 4)
        hits += torch.zeros(8, 8).scatter_(1, tgt // 4, 1.0).sum(0)
    assert set(counts) == {2, 3, 4}                                  # round(8 * [0.25, 0.5])
    assert 2.6 < sum(counts) / len(counts) < 3.4
    freq = hits / hits.sum()
    assert float((freq - 1 / 8).abs().max()) < 0.02                  # every hyper-frame equally likely


def test_temporal_mask_edge_cases_and_errors():
    assert TemporalMask(masked=(1.0, 1.0))(2, (4, 1, 1)).targets.shape == (2, 1, 3)    # at most T - 1
    assert TemporalMask(masked=(0.01, 0.01))(2, (4, 1, 1)).targets.shape == (2, 1, 1)  # at least 1
    with pytest.raises(ValueError, match="at least 2 temporal token slots"):
        TemporalMask()(2, (1, 4, 4))
    with pytest.raises(ValueError, match="masked must lie within"):
        TemporalMask(masked=(0.0, 0.5))
    a = TemporalMask()(4, (8, 2, 2), generator=step_generator(0, 0, 5))
    b = TemporalMask()(4, (8, 2, 2), generator=step_generator(0, 0, 5))
    assert torch.equal(a.targets, b.targets) and torch.equal(a.context, b.context)
    assert repr(TemporalMask()) == "TemporalMask(masked=(0.25, 0.5))"


# ------------------------------------------------------------------------------------------------ UIJEPA
def encoder() -> VisionTransformer:
    return VisionTransformer(img_size=(16, 8), patch_size=4, num_frames=8, tubelet_size=2, embed_dim=32, depth=1,
                             num_heads=2)


def predictor(masks: int = 3) -> TransformerPredictor:
    return TransformerPredictor(grid_size=(4, 4, 2), embed_dim=32, predictor_dim=16, depth=1, num_heads=2,
                                num_mask_tokens=masks, zero_init_mask_tokens=True)


def recordings(batch: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random 'recordings' [B, 3, 8, 16, 8] whose frames change over time."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 4, 2, 2, generator=g)
    return torch.nn.functional.interpolate(x, size=(8, 16, 8), mode="trilinear")


def test_ui_jepa_defaults_are_the_papers():
    m = UIJEPA(encoder(), predictor())
    assert m.ema == (0.998, 1.0) and m.input_key == "video" and isinstance(m, VJEPA)
    kinds = [type(g) for g in m.masks]
    assert kinds == [MultiBlockMask3D, MultiBlockMask3D, TemporalMask]
    assert [g.num_blocks for g in m.masks[:2]] == [8, 2] and m.masks[2].masked == (0.25, 0.5)
    assert len(ui_jepa_masks()) == 3 and len(spatial_masks()) == 2
    with pytest.raises(ValueError, match="num_mask_tokens=3"):
        UIJEPA(encoder(), predictor(masks=2))
    assert len(UIJEPA(encoder(), predictor(masks=2), masks=spatial_masks()).masks) == 2  # the ablation


def test_ui_jepa_objective_predicts_masked_hyper_frames_and_learns():
    torch.manual_seed(0)
    m = UIJEPA(encoder(), predictor(), ema=(0.99, 0.99))
    x = recordings()
    batch = {"video": x}
    batch["masks"] = m.sample_masks(batch, step_generator(0, 0, 0))
    temporal = batch["masks"][2]
    per_slot = 4 * 2
    slots = temporal.targets[:, 0] // per_slot
    assert bool((slots.unsqueeze(-1) != (temporal.context // per_slot).unsqueeze(1)).all())
    loss0 = m.objective(batch)[0]
    # the loss is the mean over the three generators of the L1 to the layer-normed teacher latents
    with torch.no_grad():
        h = m.teacher(x)
        h = torch.nn.functional.layer_norm(h, h.shape[-1:])
        expected = 0.0
        for i, mk in enumerate(batch["masks"]):
            tgt = mk.targets[:, 0]
            pred = m.predictor(m.encoder(x, keep=mk.context), mk.context, tgt, mask_token_id=i)
            expected += (pred - torch.stack([h[b, tgt[b]] for b in range(len(x))])).abs().mean() / 3
    torch.testing.assert_close(loss0, expected)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        loss = m.objective(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_tiny_recipe_pretrains_on_synthetic_ui_recordings(tmp_path, one_thread):
    pytest.importorskip("av")
    from jepa_lightning.cli import JEPACLI

    cli = JEPACLI(args=[
        "fit", "--config", str(ROOT / "recipes" / "ui_jepa" / "pretrain_tiny.yaml"),
        f"--data.init_args.cache_dir={tmp_path / 'cache'}", "--data.init_args.train_per_category=2",
        "--data.init_args.few_shot_train=1", "--data.init_args.eval_per_category=2",
        "--data.init_args.min_frames=16", "--data.init_args.max_frames=24", "--data.init_args.num_workers=0",
        "--data.init_args.image_size=[32,16]", "--data.init_args.batch_size=4",
        "--model.init_args.encoder.init_args.img_size=[32,16]", "--model.init_args.encoder.init_args.depth=1",
        "--model.init_args.encoder.init_args.embed_dim=32", "--model.init_args.encoder.init_args.num_heads=2",
        "--model.init_args.predictor.init_args.grid_size=[8,4,2]",
        "--model.init_args.predictor.init_args.embed_dim=32", "--model.init_args.predictor.init_args.depth=1",
        "--model.init_args.predictor.init_args.num_heads=2", "--model.init_args.predictor.init_args.predictor_dim=16",
        "--trainer.max_steps=4", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--run_dir={tmp_path / 'runs'}",
        f"--checkpoint.dirpath={tmp_path / 'ckpt'}"])
    metrics = cli.trainer.callback_metrics
    assert isinstance(cli.model, UIJEPA) and [type(g) for g in cli.model.masks][-1] is TemporalMask
    for key in ("train/loss", "train/target_std", "val/category_probe_acc", "train/ema"):
        assert key in metrics, key
    assert torch.isfinite(metrics["train/loss"]) and (tmp_path / "ckpt" / "last.ckpt").is_file()


def test_jepa_tuning_starts_encoder_and_teacher_from_given_weights(tmp_path):
    from safetensors.torch import save_file

    source = encoder()
    save_file(source.state_dict(), str(tmp_path / "vjepa.safetensors"))
    m = UIJEPA(encoder(), predictor(), init_encoder=str(tmp_path / "vjepa.safetensors"))
    for net in (m.encoder, m.teacher.module):
        for (name, a), b in zip(net.state_dict().items(), source.state_dict().values()):
            assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        UIJEPA(encoder(), predictor(), init_encoder=str(tmp_path / "missing.ckpt"))
