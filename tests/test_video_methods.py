"""V-JEPA and SALT: the objectives, the frozen teacher, the stage-1 -> stage-2 hand-off through a checkpoint via
the CLI, and the attentive probe on a saved video encoder."""

from __future__ import annotations

import pytest
import torch
from conftest import video_args

from jepa_lightning.cli import JEPACLI
from jepa_lightning.masks import MultiBlockMask3D, step_generator
from jepa_lightning.methods import SALT, VJEPA, SALTTeacher
from jepa_lightning.nn import TransformerPredictor, VisionTransformer, patchify


def encoder(width: int = 32) -> VisionTransformer:
    return VisionTransformer(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, embed_dim=width, depth=1,
                             num_heads=2)


def predictor(width: int = 32, out_dim: int | None = None, masks: int = 2) -> TransformerPredictor:
    return TransformerPredictor(grid_size=(2, 4, 4), embed_dim=width, predictor_dim=16, depth=1, num_heads=2,
                                num_mask_tokens=masks, out_dim=out_dim, zero_init_mask_tokens=True)


def clips(batch: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random clips [B, 3, 4, 16, 16] (learnable structure, unlike white noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 2, 4, 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(4, 16, 16), mode="trilinear")


def with_masks(module, x: torch.Tensor, step: int = 0) -> dict:
    batch = {"video": x}
    batch["masks"] = module.sample_masks(batch, step_generator(0, 0, step))
    return batch


def fit_steps(module, batch: dict, steps: int, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = module.objective(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------------------------------------ V-JEPA
def test_vjepa_checks_its_parts():
    with pytest.raises(ValueError, match="num_mask_tokens=2"):
        VJEPA(encoder(), predictor(masks=1))
    with pytest.raises(ValueError, match="grid_size"):
        VJEPA(encoder(), TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=1,
                                              num_heads=2, num_mask_tokens=2))
    with pytest.raises(ValueError, match="mask_token_id 2 out of range"):
        predictor()(torch.zeros(1, 3, 32), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.long),
                    mask_token_id=2)


def test_vjepa_objective_is_l1_to_layer_normed_teacher_latents_per_generator():
    torch.manual_seed(0)
    m = VJEPA(encoder(), predictor())
    x = clips()
    batch = with_masks(m, x)
    assert len(batch["masks"]) == 2
    loss, targets, features = m.objective(batch)[:3]
    with torch.no_grad():
        h = m.teacher(x)
        h = torch.nn.functional.layer_norm(h, h.shape[-1:])
        expected = 0.0
        for i, mk in enumerate(batch["masks"]):
            tgt = mk.targets[:, 0]
            pred = m.predictor(m.encoder(x, keep=mk.context), mk.context, tgt, mask_token_id=i)
            expected += (pred - torch.stack([h[b, tgt[b]] for b in range(len(x))])).abs().mean() / 2
    torch.testing.assert_close(loss, expected)
    assert targets.shape == (8, 32, 32) and features.shape == (8, 32)


def test_vjepa_overfits_a_batch_and_its_ema_teacher_follows():
    torch.manual_seed(0)
    m = VJEPA(encoder(), predictor(), ema=(0.9, 0.9))
    batch = with_masks(m, clips())
    before = [p.clone() for p in m.teacher.parameters()]
    losses = fit_steps(m, batch, 40)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    m.teacher.update(m.encoder, 0.9)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.teacher.parameters()))


# ------------------------------------------------------------------------------------------------ SALT
def test_salt_teacher_targets_are_per_tubelet_normalized_pixels():
    m = SALTTeacher(encoder(), predictor(out_dim=2 * 4 * 4 * 3))
    x = clips() * 3 + 1
    pixels, features = m.target_tokens(x)
    assert features is None and pixels.shape == (8, 32, 96)
    per_channel = pixels.unflatten(-1, (-1, 3))                  # [B, N, t*p*p, C]
    torch.testing.assert_close(per_channel.mean(2), torch.zeros(8, 32, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(2), torch.ones(8, 32, 3), atol=1e-3, rtol=0)
    # token 0 is the first tubelet: frames 0-1, rows 0-3, columns 0-3
    raw = patchify(x, 4, 2)[0, 0].view(-1, 3)
    tube = x[0, :, 0:2, 0:4, 0:4].permute(1, 2, 3, 0).reshape(-1, 3)
    torch.testing.assert_close(raw, tube)
    with pytest.raises(ValueError, match="out_dim=96"):
        SALTTeacher(encoder(), predictor())


def test_salt_teacher_learns_to_reconstruct_masked_tubelets():
    torch.manual_seed(0)
    m = SALTTeacher(encoder(), predictor(out_dim=96))
    losses = fit_steps(m, with_masks(m, clips()), 80, lr=1e-2)
    assert losses[0] > 0.8           # normalized pixels: predicting zero costs ~1
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5


def test_salt_student_learns_a_smaller_frozen_teacher_which_never_moves():
    torch.manual_seed(0)
    teacher = encoder(16)
    student = SALT(encoder(32), predictor(32, out_dim=16), teacher=teacher)
    frozen = {k: v.clone() for k, v in student.teacher.state_dict().items()}
    assert not any(p.requires_grad for p in student.teacher.parameters())
    trainable = {id(p) for m in student.trainable_modules() for p in m.parameters()}
    assert not trainable & {id(p) for p in student.teacher.parameters()}
    losses = fit_steps(student, with_masks(student, clips()), 40)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    for k, v in student.teacher.state_dict().items():
        assert torch.equal(v, frozen[k]), f"frozen teacher moved: {k}"
    with pytest.raises(ValueError, match="out_dim=16"):
        SALT(encoder(32), predictor(32), teacher=encoder(16))
    with pytest.raises(ValueError, match="ema"):
        SALT(encoder(32), predictor(32, out_dim=16), teacher=encoder(16), ema=(0.99, 1.0))


def test_salt_hand_off_from_stage_1_checkpoint_through_the_cli_then_attentive_probe(tmp_path, video_cache):
    """Stage 1 (pixel teacher) -> last.ckpt -> stage 2 (student reads it as its frozen teacher) -> the attentive
    probe on the saved student encoder, on the motion labels with 2 clips x 2 views averaged at evaluation."""
    steps = ["--trainer.max_steps=4", "--trainer.limit_val_batches=1"]
    stage1 = JEPACLI(args=video_args("salt/teacher_tiny.yaml", tmp_path / "t", video_cache, *steps))
    teacher_ckpt = tmp_path / "t" / "ckpt" / "last.ckpt"
    assert teacher_ckpt.is_file() and stage1.trainer.global_step == 4
    stage1_encoder = {k: v.clone() for k, v in stage1.model.encoder.state_dict().items()}

    stage2 = JEPACLI(args=video_args(
        "salt/student_tiny.yaml", tmp_path / "s", video_cache, *steps,
        f"--model.init_args.teacher_checkpoint={teacher_ckpt}", "--model.init_args.predictor.init_args.out_dim=32",
        *[f"--model.init_args.teacher.init_args.{a}" for a in ("embed_dim=32", "depth=1", "num_heads=2")]))
    assert stage2.trainer.global_step == 4
    for k, v in stage2.model.teacher.module.state_dict().items():     # loaded from stage 1, and never moved
        assert torch.equal(v, stage1_encoder[k]), k
    optimized = {id(p) for g in stage2.trainer.optimizers[0].param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in stage2.model.teacher.parameters()}
    student_ckpt = tmp_path / "s" / "ckpt" / "last.ckpt"
    saved = torch.load(student_ckpt, weights_only=True)["state_dict"]
    assert sum(k.startswith("teacher.") for k in saved) == len(stage1_encoder)   # saved once
    assert not torch.equal(saved["encoder.transformer.blocks.0.attn.qkv.weight"],
                           stage1_encoder["transformer.blocks.0.attn.qkv.weight"])

    probe = JEPACLI(args=video_args(
        "eval/attentive_probe_tiny.yaml", tmp_path / "p", video_cache, "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3", f"--model.init_args.checkpoint={student_ckpt}",
        "--model.init_args.label_key=motion", "--model.init_args.num_classes=8", "--data.init_args.eval_clips=2",
        "--data.init_args.eval_views=2", predictor=False))
    for k, v in probe.model.encoder.state_dict().items():
        assert torch.equal(v, saved[f"encoder.{k}"]), k
    assert "val/acc" in probe.trainer.callback_metrics
    batch = next(iter(probe.datamodule.val_dataloader()))
    assert batch["video"].shape[1:3] == (4, 3)         # [B, clips x views, C, T, H, W]
    logits, labels = probe.model.view_logits(batch)
    assert logits.shape == (4, len(labels), 8)


def test_vjepa_recipe_fits_with_two_online_probes(tmp_path, video_cache):
    cli = JEPACLI(args=video_args("vjepa/tiny.yaml", tmp_path, video_cache, "--trainer.max_steps=4",
                                  "--trainer.limit_val_batches=2"))
    metrics = cli.trainer.callback_metrics
    for key in ("train/loss", "train/rankme", "val/probe_acc", "val/motion_probe_acc", "data/skipped_files"):
        assert key in metrics, key
    assert torch.isfinite(metrics["train/loss"])


def test_masks_list_builds_from_yaml_and_sizes_to_the_grid():
    masks = [MultiBlockMask3D(num_blocks=8, spatial_scale=(0.15, 0.15)), MultiBlockMask3D(num_blocks=2,
                                                                                          spatial_scale=(0.7, 0.7))]
    m = VJEPA(encoder(), predictor(), masks=masks)
    batch = with_masks(m, clips())
    for mk in batch["masks"]:
        assert mk.context.max() < 32 and mk.targets.max() < 32
        assert not set(mk.context[0].tolist()) & set(mk.targets[0, 0].tolist())
