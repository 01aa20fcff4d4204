"""AD-L-JEPA: BEV cell masks, dense BEV encoder/predictor, the loss pieces and the method on random sparse BEVs."""

import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from jepa_lightning.masks.bev import BEVCellMask, BEVMasks, masked_count
from jepa_lightning.methods.adl_jepa import (
    ADLJEPA,
    adl_jepa_loss,
    context_input,
    cosine_distance,
    occupancy,
    variance_hinge,
)
from jepa_lightning.nn.bev import BEVEncoder, BEVPredictor

pytestmark = pytest.mark.usefixtures("one_thread")

C_IN, D, DS = 5, 16, 8


def sparse_bev(b=4, ny=32, nx=32, density=0.03, seed=0) -> torch.Tensor:
    """Random sparse BEV grids: occupancy slices, an intensity and a log-count channel where a cell has points."""
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(b, C_IN - 2, ny, nx, generator=g) < density
    # points only in about half of the feature cells (objects/ground in some places, nothing elsewhere)
    region = torch.rand(b, 1, -(-ny // DS), -(-nx // DS), generator=g) < 0.5
    occ &= region.repeat_interleave(DS, 2).repeat_interleave(DS, 3)[:, :, :ny, :nx]
    any_ = occ.any(1, keepdim=True)
    extra = torch.rand(b, 2, ny, nx, generator=g) * any_
    return torch.cat([occ.float(), extra], 1)


def tiny_model(**kwargs) -> ADLJEPA:
    torch.manual_seed(0)
    enc = BEVEncoder(C_IN, embed_dim=D, widths=(8, 16, 16), downsample=DS, blocks_per_stage=1)
    return ADLJEPA(enc, BEVPredictor(D, depth=3), **kwargs)


def random_occupancy(b=6, h=7, w=9, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.linspace(0.1, 0.9, b)[:, None, None]        # a different occupancy per sample
    return torch.rand(b, h, w, generator=g) < p


# ----------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_mask_shares_are_exact_per_sample_for_both_kinds_and_disjoint(ratio):
    occ = random_occupancy()
    m = BEVCellMask(ratio)(occ, torch.Generator().manual_seed(1))
    n_ne, n_e = occ.sum((1, 2)), (~occ).sum((1, 2))
    assert len(set(n_ne.tolist())) > 3                                   # samples really differ
    assert torch.equal(m.masked_nonempty.sum((1, 2)), masked_count(n_ne, ratio))
    assert torch.equal(m.masked_empty.sum((1, 2)), masked_count(n_e, ratio))
    # the reference keeps int(n * (1 - ratio)) cells of each kind
    keep = torch.tensor([int(n * (1 - ratio)) for n in n_ne.tolist()])
    assert torch.equal(m.visible_nonempty.sum((1, 2)), keep)
    assert not (m.masked_nonempty & ~occ).any() and not (m.masked_empty & occ).any()
    assert not (m.masked_nonempty & m.masked_empty).any()
    total = m.masked_nonempty | m.masked_empty | m.visible_nonempty | m.visible_empty
    assert total.all()


def test_masked_count_values():
    n = torch.tensor([0, 1, 2, 5, 10, 11])
    assert masked_count(n, 0.5).tolist() == [0, 1, 1, 3, 5, 6]
    assert masked_count(torch.tensor([10]), 0.3).tolist() == [3]
    assert masked_count(torch.tensor([10]), 0.0).tolist() == [0]
    assert masked_count(torch.tensor([10]), 1.0).tolist() == [10]


def test_masks_are_seeded_and_uniform_over_cells():
    occ = random_occupancy()
    mask = BEVCellMask(0.5)
    a = mask(occ, torch.Generator().manual_seed(3))
    b = mask(occ, torch.Generator().manual_seed(3))
    c = mask(occ, torch.Generator().manual_seed(4))
    assert torch.equal(a.masked_nonempty, b.masked_nonempty) and torch.equal(a.masked_empty, b.masked_empty)
    assert not torch.equal(a.masked_nonempty, c.masked_nonempty)
    # one occupancy repeated 4000 times in one batched call: every cell is masked with probability ~ratio
    row = random_occupancy(1, 4, 5, seed=2)
    m = BEVCellMask(0.5)(row.expand(4000, -1, -1).contiguous(), torch.Generator().manual_seed(0))
    freq_ne = m.masked_nonempty.float().mean(0)[row[0]]
    freq_e = m.masked_empty.float().mean(0)[~row[0]]
    n_ne, n_e = int(row.sum()), int((~row).sum())
    assert torch.allclose(freq_ne, torch.full_like(freq_ne, masked_count(torch.tensor(n_ne), 0.5) / n_ne), atol=0.04)
    assert torch.allclose(freq_e, torch.full_like(freq_e, masked_count(torch.tensor(n_e), 0.5) / n_e), atol=0.04)


def test_mask_errors():
    with pytest.raises(ValueError, match="ratio must be in"):
        BEVCellMask(1.5)
    with pytest.raises(ValueError, match="bool tensor"):
        BEVCellMask()(torch.zeros(2, 3, 3))


# ------------------------------------------------------------------------------------------- encoder, pieces
def test_encoder_and_predictor_shapes_and_errors():
    enc = BEVEncoder(C_IN, embed_dim=D, widths=(8, 16, 16), downsample=DS)
    assert enc(sparse_bev(2, 32, 48)).shape == (2, D, 4, 6)
    assert BEVEncoder(C_IN, 12, (8, 8, 8), downsample=4)(sparse_bev(1, 16, 16)).shape == (1, 12, 4, 4)
    assert BEVPredictor(D)(torch.randn(2, D, 4, 6)).shape == (2, D, 4, 6)
    with pytest.raises(ValueError, match="power of two"):
        BEVEncoder(C_IN, downsample=6)
    with pytest.raises(ValueError, match="not divisible"):
        enc(sparse_bev(1, 36, 32))
    with pytest.raises(ValueError, match="must expose `embed_dim`"):
        ADLJEPA(torch.nn.Conv2d(C_IN, D, 1), BEVPredictor(D))
    with pytest.raises(ValueError, match="predictor embed_dim=8 does not match"):
        ADLJEPA(enc, BEVPredictor(8))
    with pytest.raises(ValueError, match="needs an EMA teacher"):
        ADLJEPA(enc, BEVPredictor(D), ema=None)


def test_occupancy_pools_any_nonzero_channel_to_the_feature_grid():
    bev = torch.zeros(2, C_IN, 16, 24)
    bev[0, 0, 9, 2] = 1.0           # -> feature cell (1, 0)
    bev[1, C_IN - 1, 7, 23] = 0.3   # only the log-count channel -> (0, 2)
    occ = occupancy(bev, DS)
    assert occ.shape == (2, 2, 3)
    assert occ.nonzero().tolist() == [[0, 1, 0], [1, 0, 2]]


def test_context_input_zeros_exactly_under_masked_nonempty_cells():
    bev = sparse_bev(3, 32, 40, density=0.2)
    m = BEVCellMask(0.5)(occupancy(bev, DS), torch.Generator().manual_seed(0))
    ctx = context_input(bev, m.masked_nonempty, DS)
    for b in range(3):
        for y in range(32):
            for x in range(40):
                if m.masked_nonempty[b, y // DS, x // DS]:
                    assert not ctx[b, :, y, x].any()
                else:
                    assert torch.equal(ctx[b, :, y, x], bev[b, :, y, x])
    assert bev.ne(0).any() and ctx.ne(0).sum() < bev.ne(0).sum()   # some points really were removed


# -------------------------------------------------------------------------------------------------- loss
def hand_masks() -> BEVMasks:
    """One sample, a 2 x 3 grid: row 0 = non-empty cells (vis, vis, masked), row 1 = empty (vis, masked, masked)."""
    occ = torch.tensor([[[True, True, True], [False, False, False]]])
    mne = torch.tensor([[[False, False, True], [False, False, False]]])
    me = torch.tensor([[[False, False, False], [False, True, True]]])
    return BEVMasks(occ, mne, me)


def grid(vectors) -> torch.Tensor:
    """[[v00, v01, v02], [v10, v11, v12]] with 2-D vectors -> [1, 2, 2, 3]."""
    return torch.tensor(vectors, dtype=torch.float32).permute(2, 0, 1)[None]


def test_loss_cosine_weights_on_hand_made_tensors():
    m = hand_masks()
    s = 1 / math.sqrt(2)
    ctx = grid([[[1, 0], [0, 1], [1, 0]], [[1, 0], [1, 0], [1, 0]]])         # spread: no hinge at vis. non-empty
    pred = grid([[[1, 0], [1, 0], [1, 0]], [[1, 0], [1, 0], [s, s]]])
    tgt = grid([[[0, 1], [0, 1], [0, 1]], [[-1, 0], [-1, 0], [1, 0]]])
    # masked non-empty (0, 2): cos 0 -> 1; masked empty (1, 1): cos -1 -> 2, (1, 2): cos s -> 1 - s
    assert torch.allclose(cosine_distance(pred, tgt)[0, 0, 2], torch.tensor(1.0))
    parts = adl_jepa_loss(ctx, pred, tgt, m, beta=0.0)
    assert parts["loss_nonempty"].item() == pytest.approx(1.0)
    assert parts["loss_empty"].item() == pytest.approx((2 + 1 - s) / 2)
    assert parts["loss_jepa"].item() == pytest.approx(0.75 * 1.0 + 0.25 * (3 - s) / 2)
    assert parts["loss"].item() == pytest.approx(parts["loss_jepa"].item())
    parts = adl_jepa_loss(ctx, pred, tgt, m, nonempty_weight=0.5, empty_weight=0.5, alpha=2.0)
    assert parts["loss_jepa"].item() == pytest.approx(0.5 + 0.5 * (3 - s) / 2)
    # the visible non-empty context vectors (1,0), (0,1): var 0.5 per channel -> std 0.707 > 1/16: no hinge;
    # a single masked non-empty prediction: fewer than 2 cells -> 0
    assert parts["reg_context"].item() == 0.0 and parts["reg_prediction"].item() == 0.0
    assert parts["loss"].item() == pytest.approx(2.0 * parts["loss_jepa"].item())


def test_variance_hinge_value_by_hand_per_sample_and_over_batch():
    gamma, eps = 1 / 16, 1e-4
    # sample 0: channel 0 values (0.1, 0.1, 0.14) at the selected cells, channel 1 constant 1;
    # sample 1: channel 0 values (0.5, 0.5), channel 1 values (0, 1); one unselected cell each with junk
    z = torch.zeros(2, 2, 1, 4)
    z[0, 0, 0] = torch.tensor([0.1, 0.1, 0.14, 9.0])
    z[0, 1, 0] = torch.tensor([1.0, 1.0, 1.0, -9.0])
    z[1, 0, 0] = torch.tensor([0.5, 0.5, 7.0, 7.0])
    z[1, 1, 0] = torch.tensor([0.0, 1.0, 7.0, 7.0])
    mask = torch.tensor([[[True, True, True, False]], [[True, True, False, False]]])

    def hinge(values):
        t = torch.tensor(values, dtype=torch.float64)
        return max(gamma - math.sqrt(float(t.var()) + eps), 0.0)

    s0 = (hinge([0.1, 0.1, 0.14]) + hinge([1.0, 1.0, 1.0])) / 2
    s1 = (hinge([0.5, 0.5]) + hinge([0.0, 1.0])) / 2
    assert s0 > 0 and s1 > 0
    assert variance_hinge(z, mask, gamma).item() == pytest.approx((s0 + s1) / 2, rel=1e-5)
    batch = (hinge([0.1, 0.1, 0.14, 0.5, 0.5]) + hinge([1.0, 1.0, 1.0, 0.0, 1.0])) / 2
    assert variance_hinge(z, mask, gamma, over="batch").item() == pytest.approx(batch, rel=1e-5)
    # samples with < 2 selected cells are left out of the mean; none at all -> 0
    one = mask.clone()
    one[1] = False
    one[1, 0, 0] = True
    assert variance_hinge(z, one, gamma).item() == pytest.approx(s0, rel=1e-5)
    assert variance_hinge(z, torch.zeros_like(mask), gamma).item() == 0.0


def test_hinge_term_enters_with_beta_and_spreads_collapsed_embeddings():
    m = hand_masks()
    collapsed = grid([[[1, 0], [1, 0], [1, 0]], [[1, 0], [1, 0], [1, 0]]])
    expected = (1 / 16 - 0.01)                               # std = sqrt(0 + 1e-4) in both channels
    for beta in (0.0, 5.0):
        parts = adl_jepa_loss(collapsed, collapsed, collapsed, m, beta=beta)
        assert parts["reg_context"].item() == pytest.approx(expected)
        assert parts["loss"].item() == pytest.approx(parts["loss_jepa"].item() + beta * parts["loss_reg"].item())
    # descending the hinge spreads the embeddings until every channel's std reaches gamma
    z = (torch.ones(1, D, 4, 4) + 1e-3 * torch.randn(1, D, 4, 4)).requires_grad_(True)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    opt = torch.optim.SGD([z], lr=1.0)
    start = variance_hinge(z, mask).item()
    for _ in range(100):
        opt.zero_grad()
        variance_hinge(z, mask).backward()
        opt.step()
    assert start > 0.05 and variance_hinge(z, mask).item() < 1e-3
    assert z.detach().flatten(2).std(2).min() >= 1 / 16 - 1e-3


# ------------------------------------------------------------------------------------------------- method
def test_method_tokens_targets_and_teacher_input():
    model = tiny_model(target_input="masked")
    bev = sparse_bev(3, 32, 32, density=0.02)
    m = model.sample_masks({"bev": bev}, torch.Generator().manual_seed(0))
    assert m.masked_nonempty.any() and m.masked_empty.any() and m.visible_empty.any()
    seen = {}
    model.teacher.module.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    parts, out = model.forward_loss(bev, m)
    ctx, tgt = out["context"].permute(0, 2, 3, 1), out["target"].permute(0, 2, 3, 1)
    mask_tok = F.normalize(model.tokens.mask.flatten(), dim=0)
    empty_tok = F.normalize(model.tokens.empty.flatten(), dim=0)
    hidden = m.masked_nonempty | m.masked_empty
    assert torch.allclose(ctx[hidden], mask_tok.expand(int(hidden.sum()), -1), atol=1e-6)
    assert torch.allclose(ctx[m.visible_empty], empty_tok.expand(int(m.visible_empty.sum()), -1), atol=1e-6)
    assert not torch.allclose(ctx[m.visible_nonempty][0], mask_tok)
    assert torch.allclose(tgt[m.masked_empty], empty_tok.expand(int(m.masked_empty.sum()), -1), atol=1e-6)
    assert torch.allclose(out["prediction"].norm(dim=1), torch.ones(3, 4, 4), atol=1e-5)
    # "masked": the teacher sees exactly the points under the masked non-empty cells
    assert torch.equal(seen["x"], bev - context_input(bev, m.masked_nonempty, DS))
    # "full": the whole grid
    model.target_input = "full"
    seen.clear()
    model.forward_loss(bev, m)
    assert torch.equal(seen["x"], bev)
    # the loss reaches both tokens (the empty token as context and as the target of masked empty cells)
    parts["loss"].backward()
    assert model.tokens.mask.grad.abs().sum() > 0 and model.tokens.empty.grad.abs().sum() > 0


def run_steps(model: ADLJEPA, bev: torch.Tensor, steps: int, lr: float = 3e-3) -> list[dict[str, float]]:
    opt = torch.optim.AdamW([p for mod in model.trainable_modules() for p in mod.parameters()], lr=lr)
    masks = model.sample_masks({"bev": bev}, torch.Generator().manual_seed(0))
    history = []
    model.train()
    for _ in range(steps):
        parts, _ = model.forward_loss(bev, masks)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        model.teacher.update(model.encoder, 0.99)
        history.append({k: v.item() for k, v in parts.items()})
    return history


def test_a_few_optimisation_steps_lower_the_loss():
    hist = run_steps(tiny_model(beta=1.0), sparse_bev(4, 32, 32, density=0.03), steps=25)
    first, last = hist[0]["loss"], min(h["loss"] for h in hist[-5:])
    assert last < 0.7 * first, (first, last)
    assert hist[-1]["loss_empty"] < hist[0]["loss_empty"]


def test_beta_zero_vs_positive():
    bev = sparse_bev(4, 32, 32, density=0.03)
    h0 = run_steps(tiny_model(beta=0.0), bev, steps=8)
    assert all(h["loss"] == pytest.approx(h["loss_jepa"]) for h in h0)      # the hinge does not enter
    model = tiny_model(beta=10.0, gamma=0.5)                                   # a hinge that is active
    h1 = run_steps(model, bev, steps=8)
    assert all(h["loss"] == pytest.approx(h["loss_jepa"] + 10.0 * h["loss_reg"], rel=1e-5) for h in h1)
    assert h1[0]["loss_reg"] > 0 and h1[-1]["loss_reg"] < h1[0]["loss_reg"]


def test_fit_logs_loss_parts_and_embedding_std(tmp_path):
    data = [{"bev": b} for b in sparse_bev(8, 32, 32, density=0.03)]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = tiny_model(lr=1e-3, warmup=0.0)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, loader)
    logged = trainer.callback_metrics
    for key in ("train/loss", "train/loss_nonempty", "train/loss_empty", "train/loss_reg", "train/embedding_std"):
        assert key in logged and torch.isfinite(logged[key])
    assert 0 < logged["train/embedding_std"] < 1
    assert model.encode({"bev": data[0]["bev"][None]}).shape == (1, 16, D)
