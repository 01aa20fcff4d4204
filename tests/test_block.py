"""Our transformer block is timm's computation under timm's names: same initial weights from the same seed, same
outputs and gradients (drop-path's random draws included), and a ViT loads timm-named state dicts unchanged."""

from functools import partial

import pytest
import torch
from timm.models.vision_transformer import Block as TimmBlock
from torch import nn

from jepa_lightning.nn import TransformerStack
from jepa_lightning.nn.block import Block


def timm_stack(dim: int, depth: int, heads: int, drop_path_rate: float) -> nn.ModuleList:
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList(TimmBlock(dim, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=r, norm_layer=norm)
                         for r in rates)


def test_same_seed_builds_the_same_weights_under_the_same_names_as_timm():
    torch.manual_seed(3)
    ours = TransformerStack(48, 3, 4, drop_path_rate=0.2).blocks
    torch.manual_seed(3)
    theirs = timm_stack(48, 3, 4, 0.2)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("train", [False, True])
def test_outputs_and_gradients_equal_timms(train):
    torch.manual_seed(0)
    theirs = timm_stack(48, 3, 4, 0.3).train(train)
    ours = nn.ModuleList(Block(48, 4, drop_path=r, norm_layer=partial(nn.LayerNorm, eps=1e-6))
                         for r in (0.0, 0.15, 0.3)).train(train)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 10, 48)
    outs = []
    for blocks in (theirs, ours):
        torch.manual_seed(1)  # drop-path draws
        y = x.clone().requires_grad_()
        h = y
        for block in blocks:
            h = block(h)
        h.square().sum().backward()
        outs.append((h.detach(), y.grad, [p.grad for p in blocks.parameters()]))
    (h0, g0, p0), (h1, g1, p1) = outs
    assert torch.equal(h0, h1) and torch.equal(g0, g1)
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    if train:  # drop-path really dropped something: the two samples' scales differ from eval mode
        assert not torch.allclose(h1, ours.eval()[0](x))
