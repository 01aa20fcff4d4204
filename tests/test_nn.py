import math

import pytest
import torch

from jepa_lightning.nn import (
    PatchEmbed2D,
    TransformerPredictor,
    TubeletEmbed3D,
    VisionTransformer,
    gather_tokens,
    sincos_1d,
    sincos_pos_embed,
)


def test_sincos_1d_matches_formula():
    pos = torch.tensor([0.0, 1.0, 5.0])
    emb = sincos_1d(pos, 8)
    omega = 1.0 / 10000 ** (torch.arange(4, dtype=torch.float64) / 4.0)
    expected = torch.cat([torch.sin(pos[:, None].double() * omega), torch.cos(pos[:, None].double() * omega)], 1)
    assert torch.allclose(emb, expected)


def test_sincos_2d_rows_and_columns():
    emb = sincos_pos_embed((3, 4), 16)
    assert emb.shape == (12, 16) and emb.dtype == torch.float32
    grid = emb.reshape(3, 4, 16)
    # first half encodes the row, second half the column
    assert torch.allclose(grid[0, 0, :8], grid[0, 3, :8]) and not torch.allclose(grid[0, 0, :8], grid[1, 0, :8])
    assert torch.allclose(grid[0, 1, 8:], grid[2, 1, 8:]) and not torch.allclose(grid[0, 1, 8:], grid[0, 2, 8:])
    # every position distinct
    assert torch.cdist(emb, emb).add(torch.eye(12) * 10).min() > 1e-3


def test_sincos_3d_split_and_uniqueness():
    emb = sincos_pos_embed((2, 3, 3), 48)
    assert emb.shape == (18, 48)
    grid = emb.reshape(2, 3, 3, 48)
    t_dim = 48 - 2 * math.ceil(48 / 6) * 2
    assert torch.allclose(grid[0, 0, 0, :t_dim], grid[0, 2, 1, :t_dim])       # time channels ignore space
    assert not torch.allclose(grid[0, 0, 0, :t_dim], grid[1, 0, 0, :t_dim])
    assert torch.cdist(emb, emb).add(torch.eye(18) * 10).min() > 1e-3


def test_sincos_rejects_odd_dims():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed((4, 4), 18)


def test_patch_and_tubelet_embed_shapes_and_errors():
    pe = PatchEmbed2D(32, 8, 3, 16)
    assert pe(torch.randn(2, 3, 32, 32)).shape == (2, 16, 16) and pe.grid_size == (4, 4)
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 32, 32\]"):
        pe(torch.randn(2, 3, 16, 16))
    te = TubeletEmbed3D(16, 8, num_frames=4, tubelet_size=2, in_chans=3, embed_dim=12)
    assert te(torch.randn(2, 3, 4, 16, 16)).shape == (2, 8, 12) and te.grid_size == (2, 2, 2)
    with pytest.raises(ValueError, match="not divisible"):
        TubeletEmbed3D(16, 8, num_frames=3, tubelet_size=2)


def test_gather_tokens():
    B, N, D = 3, 10, 4
    x = torch.arange(B * N * D, dtype=torch.float32).view(B, N, D)
    idx = torch.tensor([[0, 5, 9], [1, 2, 3], [9, 8, 7]])
    out = gather_tokens(x, idx)
    assert out.shape == (B, 3, D)
    for b in range(B):
        assert torch.equal(out[b], x[b, idx[b]])
    idx3 = torch.randint(0, N, (B, 2, 5), generator=torch.Generator().manual_seed(0))
    out3 = gather_tokens(x, idx3)
    assert out3.shape == (B, 2, 5, D)
    for b in range(B):
        for t in range(2):
            assert torch.equal(out3[b, t], x[b, idx3[b, t]])
    xg = x.clone().requires_grad_(True)
    gather_tokens(xg, idx).sum().backward()
    assert xg.grad.sum() == B * 3 * D
    with pytest.raises(ValueError, match="batch"):
        gather_tokens(x, idx[:2])
    with pytest.raises(ValueError, match="indices"):
        gather_tokens(x, torch.zeros(B, dtype=torch.long))


def test_vit_keep_equals_masking_without_attention_leak():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4).eval()
    x = torch.randn(2, 3, 16, 16)
    full = vit(x)
    assert full.shape == (2, 16, 32) and vit.num_patches == 16
    keep = torch.tensor([[0, 5, 6, 15], [1, 2, 3, 4]])
    kept = vit(x, keep=keep)
    assert kept.shape == (2, 4, 32)
    # encoding only the kept tokens is not the same as encoding all and selecting (tokens attend to fewer)
    assert not torch.allclose(kept, gather_tokens(full, keep), atol=1e-4)
    # but it equals encoding an input where only those tokens exist: changing a dropped patch changes nothing
    x2 = x.clone()
    x2[1, :, 12:16, 12:16] += 5.0  # patch 15, not kept for sample 1
    assert torch.allclose(vit(x2, keep=keep)[1], kept[1], atol=1e-6)


def test_predictor_multi_block_equals_per_block_passes():
    torch.manual_seed(0)
    pred = TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=2, num_heads=2).eval()
    z = torch.randn(2, 5, 32)
    ctx = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    tgt = torch.tensor([[[10, 11], [12, 13], [14, 15]], [[0, 1], [2, 3], [4, 15]]])
    out = pred(z, ctx, tgt)
    assert out.shape == (2, 3, 2, 32)
    for t in range(3):
        assert torch.allclose(out[:, t], pred(z, ctx, tgt[:, t]), atol=1e-5)
    with pytest.raises(ValueError, match="encoder width 32"):
        pred(torch.randn(2, 5, 8), ctx, tgt)


def test_vit_video_mode():
    vit = VisionTransformer(img_size=16, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=24, depth=1,
                            num_heads=2)
    assert vit.grid_size == (2, 2, 2) and vit(torch.randn(1, 3, 4, 16, 16)).shape == (1, 8, 24)


def test_vit_patch_init_std_sets_the_patch_embedding_apart():
    kw = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=64, depth=2, num_heads=4)
    torch.manual_seed(0)
    default = VisionTransformer(**kw)
    torch.manual_seed(0)
    same = VisionTransformer(**kw, patch_init_std=None)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), same.state_dict().values()))
    torch.manual_seed(0)
    wide = VisionTransformer(**kw, patch_init_std=0.04)
    w = wide.patch_embed.proj.weight
    assert w.std().item() == pytest.approx(0.04, rel=0.05)
    assert default.patch_embed.proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    # every other weight keeps the official rule
    rest = [k for k in default.state_dict() if not k.startswith("patch_embed.proj.weight")]
    assert all(torch.equal(default.state_dict()[k], wide.state_dict()[k]) for k in rest)
    # the embedded content doubles against the fixed positions
    x = torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        assert (wide.patch_embed(x).std() / default.patch_embed(x).std()).item() == pytest.approx(2.0, rel=0.1)
