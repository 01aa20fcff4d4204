"""Activation checkpointing per transformer block (`checkpoint_blocks`): the same gradients as without it (drop-path
replayed, RoPE, the predictor, bf16 autocast), far fewer tensors kept for the backward pass, no recomputation in
forward-only passes, and clear errors for a bad setting. FSDP2 with it: tests/test_fsdp.py."""

import pytest
import torch

import jepa_lightning.nn.transformer as transformer
from jepa_lightning.nn import TransformerPredictor, VisionTransformer


def vit(checkpoint_blocks, pos_embed="sincos"):
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=4, drop_path_rate=0.3,
                             pos_embed=pos_embed, checkpoint_blocks=checkpoint_blocks)


def grads(model, run, seed=1):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same drop-path draws for every arm
    run(model).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=atol), f"{k}: max diff {(a[k] - b[k]).abs().max():.2e}"


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
@pytest.mark.parametrize("checkpoint_blocks", [1, "all"])
def test_encoder_gradients_equal_the_plain_model(checkpoint_blocks, pos_embed):
    images, keep = torch.randn(4, 3, 32, 32), torch.randint(0, 16, (4, 9))
    plain, ckpt = vit(0, pos_embed).train(), vit(checkpoint_blocks, pos_embed).train()
    assert ckpt.transformer.checkpoint_blocks == (3 if checkpoint_blocks == "all" else 1)
    assert_same(grads(plain, lambda m: m(images, keep)), grads(ckpt, lambda m: m(images, keep)))


def test_predictor_gradients_equal_the_plain_model():
    def make(n):
        torch.manual_seed(0)
        return TransformerPredictor(grid_size=(4, 4), embed_dim=48, predictor_dim=32, depth=2, num_heads=4,
                                    drop_path_rate=0.2, checkpoint_blocks=n).train()

    z, ctx, tgt = torch.randn(3, 6, 48), torch.randint(0, 16, (3, 6)), torch.randint(0, 16, (3, 2, 4))
    assert_same(grads(make(0), lambda m: m(z, ctx, tgt)), grads(make("all"), lambda m: m(z, ctx, tgt)))


def test_bf16_autocast_gradients_equal_the_plain_model():
    images = torch.randn(2, 3, 32, 32)

    def run(m):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return m(images).float()

    # the recomputed forward runs under the same autocast state, so even bf16 rounding is replayed exactly
    assert_same(grads(vit(0), run), grads(vit("all"), run))


def saved_bytes(model, images):
    """Bytes of the tensors autograd keeps for the backward pass during one forward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(images).sum().backward()
    return total


def test_checkpointing_keeps_far_fewer_activations():
    images = torch.randn(8, 3, 32, 32)
    plain, ckpt = saved_bytes(vit(0).eval(), images), saved_bytes(vit("all").eval(), images)
    # kept: each block's input (and the stem and final norm) instead of its attention and 4x-wide MLP activations
    assert ckpt < 0.25 * plain, (ckpt, plain)


def test_forward_only_passes_do_not_checkpoint(monkeypatch):
    calls = []
    monkeypatch.setattr(transformer, "checkpoint", lambda *a, **k: calls.append(1) or a[0](*a[1:]))
    model, images = vit("all").eval(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
    assert calls == []
    model(images)
    assert len(calls) == 3 and torch.allclose(out, model(images))


@pytest.mark.parametrize("bad, message", [(-1, ">= 0 or 'all'"), ("some", ">= 0 or 'all'"), (True, ">= 0 or 'all'"),
                                          (4, "only 3 blocks")])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        vit(bad)
