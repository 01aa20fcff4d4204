"""Rotary positions (V-JEPA 2): the rotation, the encoder's and the predictor's use of grid positions, and a
V-JEPA 2-style run (the equality with V-JEPA 2's published encoders is in test_pretrained.py)."""

import math

import pytest
import torch

from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.vit import VisionTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rope_positions_travel_with_the_kept_tokens():
    """Attention is permutation-equivariant once positions go with the tokens: encoding a shuffled `keep` gives
    the full output shuffled (it would not if the kept tokens were numbered 0..K-1)."""
    from jepa_lightning.nn.rope import grid_positions, rotate

    torch.manual_seed(0)
    for build in ({"num_frames": 4, "tubelet_size": 2}, {}):  # video (3-D) and image (2-D: frame 0) grids
        vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=4, pos_embed="rope",
                                **build).eval()
        x = torch.randn(2, 3, 4, 16, 16) if build else torch.randn(2, 3, 16, 16)
        perm = torch.stack([torch.randperm(vit.num_patches) for _ in range(2)])
        with torch.no_grad():
            full = vit(x)
            assert torch.allclose(vit(x, keep=perm), full.gather(1, perm[..., None].expand(-1, -1, 48)), atol=1e-5)
            assert not torch.allclose(vit(x, keep=perm), full, atol=1e-3)
    assert grid_positions(torch.tensor([0, 5, 17, 31]), (2, 4, 4)).tolist() == [
        [0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 3, 3]]
    q, k = torch.randn(5, 2), torch.randn(5, 2)  # a 2-feature part is a true rotation: scores see offsets only
    p1, p2 = torch.rand(5) * 9, torch.rand(5) * 9
    score = lambda a, b: (rotate(q, a) * rotate(k, b)).sum(-1)  # noqa: E731
    assert torch.allclose(score(p1, p2), score(p1 + 3.0, p2 + 3.0), atol=1e-5)
    assert torch.equal(rotate(q, torch.zeros(5)), q)
    with pytest.raises(ValueError, match="grid positions"):
        vit.transformer(torch.randn(1, 16, 48))


def test_rope_predictor_places_mask_tokens_by_their_positions():
    """All mask tokens are the same vector: with RoPE their outputs differ only through their grid positions, and
    swapping two target positions swaps the two outputs."""
    torch.manual_seed(0)
    pred = TransformerPredictor(grid_size=(2, 4, 4), embed_dim=32, predictor_dim=16, depth=2, num_heads=2,
                                pos_embed="rope").eval()
    with torch.no_grad():  # away from the near-uniform attention of the small init
        for w in pred.parameters():
            w.normal_(0, 0.3)
    assert "pos_embed" not in pred.state_dict()
    z, ctx = torch.randn(1, 5, 32), torch.tensor([[0, 3, 9, 20, 31]])
    with torch.no_grad():
        ab = pred(z, ctx, torch.tensor([[4, 27]]))
        ba = pred(z, ctx, torch.tensor([[27, 4]]))
        several = pred(z, ctx, torch.tensor([[[4, 27], [27, 4]]]))  # two target blocks in one pass
    assert (ab[0, 0] - ab[0, 1]).abs().max() > 1e-2  # identical mask tokens: 0 without positions
    assert torch.allclose(ab.flip(1), ba, atol=1e-5) and torch.allclose(several[:, 0], ab, atol=1e-5)
    with pytest.raises(ValueError, match="pos_embed must be 'sincos', 'stored' or 'rope'"):
        TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=1, num_heads=2, pos_embed="x")


def test_vjepa_with_rope_trains(tmp_path):
    """The V-JEPA digits recipe with RoPE in the encoder and the predictor (recipes/vjepa2/objects_tiny.yaml's
    setting) takes optimizer steps with a finite, moving loss."""
    from conftest import ROOT

    from jepa_lightning.cli import JEPACLI

    rope = ["--model.init_args.encoder.init_args.pos_embed=rope", "--model.init_args.predictor.init_args.pos_embed=rope"]
    cli = JEPACLI(run=False, args=["--config", str(ROOT / "recipes/vjepa/tiny.yaml"), f"--run_dir={tmp_path}",
                                   f"--checkpoint.dirpath={tmp_path / 'ckpt'}", "--trainer.max_steps=4",
                                   "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
                                   "--trainer.limit_val_batches=0", "--data.init_args.num_workers=0",
                                   "--data.init_args.batch_size=4", *rope])
    assert cli.model.encoder.rope and cli.model.predictor.rope
    before = cli.model.encoder.transformer.blocks[0].attn.qkv.weight.detach().clone()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    loss = float(cli.trainer.callback_metrics["train/loss"])
    assert cli.trainer.global_step == 4 and math.isfinite(loss)
    assert not torch.equal(before, cli.model.encoder.transformer.blocks[0].attn.qkv.weight)
