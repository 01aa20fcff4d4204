"""DMT-JEPA: neighbour selection vs a brute-force reference, what a target reads (the image mean and the selected
neighbours, of its own sample), the global context mode, the scenes data, the patch-level evaluation, learning,
the CLI recipe and the benchmark's smoke run."""


import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from lightning.pytorch import Callback, Trainer

from datamodules.scenes import DigitScenesDataModule, render_scenes
from jepa_lightning.cli import main as cli_main
from jepa_lightning.eval.segmentation import mean_iou, patch_labels, segmentation_miou
from jepa_lightning.masks import MultiBlockMask2D
from jepa_lightning.methods.dmt_jepa import DMTJEPA, LocalAggregationHead, neighbour_table
from jepa_lightning.nn import TransformerPredictor, VisionTransformer

RECIPE = str(ROOT / "recipes" / "dmt_jepa" / "tiny.yaml")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dmt(**kwargs) -> DMTJEPA:
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    pred = TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
    return DMTJEPA(enc, pred, head=LocalAggregationHead(32, num_heads=4), masks=MultiBlockMask2D(min_keep=2),
                   **kwargs)


# ------------------------------------------------------------------------------ neighbour selection
def brute_force_neighbours(feats, grid, query, window, k):
    """Plain-Python reference: the top-k window neighbours (inside the grid, query excluded) of one patch, by
    cosine similarity, most similar first."""
    height, width = grid
    y, x = divmod(query, width)
    f = F.normalize(feats, dim=-1)
    r = window // 2
    cands = [(float(f[query] @ f[(y + dy) * width + x + dx]), (y + dy) * width + x + dx)
             for dy in range(-r, r + 1) for dx in range(-r, r + 1)
             if (dy, dx) != (0, 0) and 0 <= y + dy < height and 0 <= x + dx < width]
    return [j for _, j in sorted(cands, reverse=True)[:k]]


def test_neighbour_table_matches_grid_geometry_without_wraparound():
    table = neighbour_table((4, 4), 3)
    assert table.shape == (16, 8)
    for i in range(16):
        y, x = divmod(i, 4)
        expect = {(y + dy) * 4 + x + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if (dy, dx) != (0, 0) and 0 <= y + dy < 4 and 0 <= x + dx < 4}
        got = set(table[i].tolist()) - {-1}
        assert got == expect, i
    assert (table[0] >= 0).sum() == 3 and (table[5] >= 0).sum() == 8 and (table[4] >= 0).sum() == 5
    assert (neighbour_table((5, 6), 5) >= 0).sum(1).max() == 24


@pytest.mark.parametrize("window,k", [(3, 4), (5, 6)])
def test_selection_matches_brute_force_and_never_crosses_the_border(window, k):
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, window=window, k=k)
    grid, B, n = (4, 5), 3, 20
    feats = torch.randn(B, n, 16)
    every = torch.arange(n).expand(B, n)
    idx, valid = head.select(feats, grid, every)
    for b in range(B):
        for q in range(n):
            got = [int(j) for j, v in zip(idx[b, q], valid[b, q]) if v]
            assert got == brute_force_neighbours(feats[b], grid, q, window, k), (b, q)
            (y, x), r = divmod(q, grid[1]), window // 2
            assert all(abs(j // grid[1] - y) <= r and abs(j % grid[1] - x) <= r and j != q for j in got)
    # a corner of a 3x3 window has 3 neighbours: with k=4 the 4th key is masked, never taken across the edge
    assert valid[:, 0].sum(-1).tolist() == [min(k, (r + 1) ** 2 - 1)] * B


def test_masked_keys_do_not_count():
    """A corner patch has 3 neighbours: its target with k=4 (one key masked) equals the same head with k=3."""
    torch.manual_seed(0)
    h4 = LocalAggregationHead(16, num_heads=2, k=4).eval()
    h3 = LocalAggregationHead(16, num_heads=2, k=3).eval()
    h3.load_state_dict(h4.state_dict())
    feats = F.layer_norm(torch.randn(2, 16, 16), (16,))
    corners = torch.tensor([[0, 3, 12, 15]] * 2)
    assert torch.allclose(h4(feats, (4, 4), corners), h3(feats, (4, 4), corners), atol=1e-6)
    inner = torch.tensor([[5, 6]] * 2)  # 8 neighbours: k matters
    assert not torch.allclose(h4(feats, (4, 4), inner), h3(feats, (4, 4), inner), atol=1e-4)


# ---------------------------------------------------------------------------------- the targets
def test_target_reads_its_patch_only_through_the_mean_and_the_selection():
    """Patch 5 of a 4x4 grid; patch 15 is outside its 3x3 window. With k=8 every neighbour is selected, so the
    selection cannot move: changing h_5 while holding the image mean (compensating at patch 15) leaves s_5 as is.
    The query is the image mean: moving patch 15 alone changes s_5; so does changing a neighbour."""
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, k=8, init_std=0.2).eval()  # visible effects
    h = torch.randn(1, 16, 16)
    q = torch.tensor([[5]])
    s = head(h, (4, 4), q)
    delta = 3.0 * torch.randn(16)
    own = h.clone()
    own[0, 5] += delta
    own[0, 15] -= delta                                    # the mean is unchanged
    assert torch.allclose(own.mean(1), h.mean(1), atol=1e-6)
    assert torch.allclose(head(own, (4, 4), q), s, atol=1e-5)
    far = h.clone()
    far[0, 15] += delta                                    # not a neighbour, but the mean moves
    assert not torch.allclose(head(far, (4, 4), q), s, atol=1e-3)
    near = h.clone()
    near[0, 0] += delta                                    # a (selected) neighbour ...
    near[0, 15] -= delta                                   # ... with the mean held
    assert not torch.allclose(head(near, (4, 4), q), s, atol=1e-3)


def test_neighbours_query_makes_the_target_local():
    """The ablation `query="neighbours"`: the target starts from the mean of the patch's own neighbours, so a patch
    outside the window no longer reaches it (with the image-mean query it does, above); its neighbours still do."""
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, k=8, init_std=0.2, query="neighbours").eval()
    h = torch.randn(1, 16, 16)
    q = torch.tensor([[5]])
    s = head(h, (4, 4), q)
    far = h.clone()
    far[0, 15] += 3.0 * torch.randn(16)                    # outside patch 5's 3x3 window
    assert torch.allclose(head(far, (4, 4), q), s, atol=1e-5)
    near = h.clone()
    near[0, 0] += 3.0 * torch.randn(16)                    # a neighbour
    assert not torch.allclose(head(near, (4, 4), q), s, atol=1e-3)
    corner = head(h, (4, 4), torch.tensor([[0]]))          # 3 valid neighbours of 8: masked ones do not count
    moved = h.clone()
    moved[0, 10] += 3.0                                    # patch 10 is not a neighbour of patch 0
    assert torch.allclose(head(moved, (4, 4), torch.tensor([[0]])), corner, atol=1e-5)
    with pytest.raises(ValueError, match="query must be 'image_mean' or 'neighbours', got 'patch'"):
        LocalAggregationHead(16, query="patch")


def test_target_depends_on_the_selected_neighbours_not_on_the_others():
    torch.manual_seed(1)
    head = LocalAggregationHead(16, num_heads=2, k=2, init_std=0.2).eval()
    h = torch.randn(1, 16, 16)
    q = torch.tensor([[5]])
    idx, _ = head.select(h, (4, 4), q)
    s = head(h, (4, 4), q)
    chosen = set(idx[0, 0].tolist())
    other = next(j for j in neighbour_table((4, 4), 3)[5].tolist() if j not in chosen)
    moved = h.clone()
    delta = -h[0, 5] - moved[0, other]                     # `other` becomes -h_5: the least similar possible
    moved[0, other] += delta
    moved[0, 15] -= delta                                  # the mean held
    assert set(head.select(moved, (4, 4), q)[0][0, 0].tolist()) == chosen
    assert torch.allclose(head(moved, (4, 4), q), s, atol=1e-5)
    sel = h.clone()
    sel[0, idx[0, 0, 0]] += 0.5 * h[0, 5]                  # a selected neighbour changes (and stays selected)
    sel[0, 15] -= 0.5 * h[0, 5]
    assert set(head.select(sel, (4, 4), q)[0][0, 0].tolist()) == chosen
    assert not torch.allclose(head(sel, (4, 4), q), s, atol=1e-4)


def test_targets_at_init_are_not_the_ijepa_targets():
    """The old definition (the patch's own latent as query, key and residual) gave cos 0.9999 with the I-JEPA
    target at init (0.9989 at the tiny recipe's width); aggregating the neighbours into the image-mean token
    gives about 0.84."""
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2").eval()
    x = torch.randn(8, 3, 16, 16)
    m = model.masks(8, (4, 4), generator=torch.Generator().manual_seed(0))
    targets = model.forward_loss(x, m).targets
    h = F.layer_norm(model.teacher(x), (32,))
    ijepa = torch.stack([h[b, m.targets[b]] for b in range(8)])
    cos = F.cosine_similarity(targets, ijepa, dim=-1).mean().item()
    assert cos < 0.95, cos


def test_batch_alignment_each_sample_uses_only_its_own_tokens():
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2").eval()
    x = torch.randn(3, 3, 16, 16)
    m = model.masks(3, (4, 4), generator=torch.Generator().manual_seed(0))
    targets = model.forward_loss(x, m).targets
    x2 = x.clone()
    x2[1] = torch.randn(3, 16, 16)  # perturb sample 1 only
    targets2 = model.forward_loss(x2, m).targets
    assert torch.equal(targets[0], targets2[0]) and torch.equal(targets[2], targets2[2])
    assert not torch.allclose(targets[1], targets2[1])
    # the batched targets equal per-sample runs (a `repeat`-tiled mean query mixes samples and fails this)
    h = F.layer_norm(model.teacher(x), (32,))
    q = m.targets.flatten(1)
    head = model.target_head
    batched = head(h, (4, 4), q)
    single = torch.cat([head(h[b:b + 1], (4, 4), q[b:b + 1]) for b in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_global_mode_shape_own_sample_only_and_order_equivariant():
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, init_std=0.2).eval()
    z = torch.randn(3, 7, 16)
    out = head(z)
    assert out.shape == (3, 7, 16)
    z2 = z.clone()
    z2[1] += torch.randn(7, 16)
    out2 = head(z2)
    assert torch.equal(out[0], out2[0]) and torch.equal(out[2], out2[2])
    assert not torch.allclose(out[1], out2[1])
    single = torch.cat([head(z[b:b + 1]) for b in range(3)])
    assert torch.allclose(out, single, atol=1e-5)
    perm = torch.randperm(7)
    assert torch.allclose(head(z[:, perm]), out[:, perm], atol=1e-5)  # no positions: a set operation
    # the summary reads every visible token: changing one changes all the others' outputs
    z3 = z.clone()
    z3[0, 0] += 2.0 * torch.randn(16)
    assert not torch.allclose(head(z3)[0, 1:], out[0, 1:], atol=1e-4)


def test_targets_gradients_and_ema_head():
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2")
    x = torch.randn(2, 3, 16, 16)
    m = model.masks(2, (4, 4), generator=torch.Generator().manual_seed(0))
    loss, targets, features = model.forward_loss(x, m)[:3]
    b, t, k = m.targets.shape
    assert targets.shape == (b, t, k, 32) and features.shape == (2, 32)
    assert torch.allclose(targets.mean(-1), torch.zeros(b, t, k), atol=1e-5)  # the head ends in a LayerNorm
    loss.backward()
    assert model.head.blocks[0].xattn.q.weight.grad is not None  # the context-side head learns
    assert all(p.grad is None for p in model.target_head.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    names = {type(mod).__name__ for mod in model.trainable_modules()}
    assert "LocalAggregationHead" in names and "EMATeacher" not in names


def test_state_dict_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2").eval()
    torch.nn.init.normal_(model.target_head.module.blocks[1].xattn.proj.weight)  # the EMA head differs
    torch.save(model.state_dict(), tmp_path / "m.pt")
    torch.manual_seed(1)
    fresh = tiny_dmt(loss="l2").eval()
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randn(2, 3, 16, 16)
    m = model.masks(2, (4, 4), generator=torch.Generator().manual_seed(0))
    (l1, t1), (l2, t2) = model.forward_loss(x, m)[:2], fresh.forward_loss(x, m)[:2]
    assert torch.equal(t1, t2) and torch.equal(l1, l2)


def test_bad_configuration_errors_name_the_value():
    with pytest.raises(ValueError, match=r"k must be in \[1, 8\] for window=3.*got 9"):
        LocalAggregationHead(32, k=9)
    with pytest.raises(ValueError, match="window must be an odd integer >= 3, got 4"):
        LocalAggregationHead(32, window=4)
    head = LocalAggregationHead(32)
    with pytest.raises(ValueError, match=r"tokens cover 15 patches, the grid \(4, 4\) has 16"):
        head(torch.randn(1, 15, 32), (4, 4), torch.tensor([[0]]))
    with pytest.raises(ValueError, match=r"queries must be \[B=1, Q\] patch indices, got \[2, 1\]"):
        head(torch.randn(1, 16, 32), (4, 4), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="target mode \\(queries given\\) needs grid_size"):
        head(torch.randn(1, 16, 32), queries=torch.tensor([[0]]))
    with pytest.raises(ValueError, match=r"expects tokens \[B, N, 32\], got \[1, 16, 48\]"):
        head(torch.randn(1, 16, 48))
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4)
    pred = TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="head embed_dim=48 does not match the encoder's 32"):
        DMTJEPA(enc, pred, head=LocalAggregationHead(48))


# ------------------------------------------------------------------------------------- scenes data
def test_render_scenes_labels_each_digit_pixel_where_it_is_drawn():
    digits = torch.zeros(2, 4, 4)
    digits[0, 1:3, 1:3] = 1.0       # class 7: a 2x2 square
    digits[1, :, 0] = 0.6           # class 3: a column
    labels = torch.tensor([7, 3])
    img, seg, lab = render_scenes(digits, labels, 50, 10, (1, 3), 0.25, torch.Generator().manual_seed(0))
    assert img.shape == seg.shape == (50, 10, 10) and lab.shape == (50,)
    assert torch.equal(seg > 0, img > 0.25)                     # labelled exactly where ink is
    assert set(seg.unique().tolist()) <= {0, 4, 8}
    assert torch.equal(seg[img == 1.0], torch.full_like(seg[img == 1.0], 8))   # the square's pixels are 7s
    area = torch.stack([(seg == 8).flatten(1).sum(1), (seg == 4).flatten(1).sum(1)], 1)
    assert torch.equal(lab, torch.where(area[:, 0] > area[:, 1], 7, 3))   # most pixels; ties -> smaller class


def test_scenes_datamodule_batches_and_alignment_of_crop():
    dm = DigitScenesDataModule(num_train=64, num_val=32, batch_size=16, crop_scale=(0.3, 0.6))
    dm.setup()
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (16, 3, 32, 32) and val["segmentation"].shape == (16, 32, 32)
    assert val["segmentation"].dtype == torch.long and val["label"].dtype == torch.long
    ink = val["image"][:, 0] * 0.5 + 0.5
    assert torch.equal(val["segmentation"] > 0, ink > 0.25)   # the mask is the rendered digits
    counts = torch.stack([torch.bincount(s[s > 0], minlength=11) for s in val["segmentation"]])
    assert bool((counts.gather(1, (val["label"] + 1)[:, None]).squeeze(1) == counts.max(1).values).all())
    # training views: RandomResizedCrop moves image and mask together (bilinear vs nearest: edges may differ)
    batch = next(iter(dm.train_dataloader()))
    ink = batch["image"][:, 0] * 0.5 + 0.5 > 0.25
    fg = batch["segmentation"] > 0
    iou = ((ink & fg).sum() / (ink | fg).sum()).item()
    assert iou > 0.8, iou
    shuffled = ((ink & fg.roll(1, 0)).sum() / (ink | fg.roll(1, 0)).sum()).item()
    assert shuffled < 0.5 * iou  # a mask from another sample does not match
    assert not torch.equal(batch["image"][:, 0], dm.train_dataset.images[:16, 0])  # views are cropped


# ------------------------------------------------------------------------------- patch evaluation
def test_patch_labels_majority_vote_and_miou_over_present_classes():
    seg = torch.zeros(1, 4, 4, dtype=torch.long)
    seg[0, :2, :2] = torch.tensor([[3, 3], [3, 0]])   # patch 0: 3 wins 3:1
    seg[0, :2, 2:] = torch.tensor([[1, 2], [0, 0]])   # patch 1: background wins 2:1:1
    seg[0, 2:, :2] = 2                                 # patch 2: 2
    seg[0, 2:, 2:] = torch.tensor([[1, 1], [2, 2]])   # patch 3: tie 1 vs 2 -> smaller id
    assert patch_labels(seg, 2, 4).tolist() == [[3, 0, 2, 1]]
    target = torch.tensor([0, 0, 1, 1])
    assert mean_iou(torch.tensor([0, 0, 1, 1]), target, 11) == 1.0   # absent classes do not count
    assert mean_iou(torch.tensor([0, 1, 1, 1]), target, 11) == pytest.approx((0.5 + 2 / 3) / 2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        patch_labels(seg + 1, 2, 4)


def test_patch_probes_separate_separable_patches():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    x = torch.randn(600, 8, generator=g) * 0.3 + F.one_hot(y, 8).float() * 2
    for clf in ("knn", "linear"):
        assert segmentation_miou(x[:400], y[:400], x[400:], y[400:], 3, clf) > 0.95


# --------------------------------------------------------------------------------------- training
class Losses(Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


def test_short_fit_on_scenes_lowers_loss_and_moves_both_ema_networks(tmp_path):
    torch.manual_seed(0)
    model = tiny_dmt(lr=1e-3, warmup=0.05)
    dm = DigitScenesDataModule(image_size=16, digit_size=8, num_train=256, num_val=32, batch_size=32)
    losses = Losses()
    trainer = Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[losses],
                      limit_val_batches=0, default_root_dir=tmp_path)
    head0 = model.target_head.module.blocks[0].xattn.q.weight.clone()
    trainer.fit(model, datamodule=dm)
    first, last = sum(losses.values[:3]) / 3, sum(losses.values[-3:]) / 3
    assert last < 0.75 * first, (first, last)  # measured 0.68
    assert not torch.equal(model.target_head.module.blocks[0].xattn.q.weight, head0)  # EMA moved
    assert not torch.equal(model.target_head.module.blocks[0].xattn.q.weight, model.head.blocks[0].xattn.q.weight)


def test_cli_fit_then_validate_on_the_tiny_recipe(tmp_path):
    small = ["--model.init_args.encoder.init_args.depth=1", "--model.init_args.predictor.init_args.depth=1",
             "--data.init_args.num_train=128", "--data.init_args.num_val=64", "--data.init_args.batch_size=32",
             "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
             "--trainer.enable_model_summary=false",
             f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    cli_main(["fit", "--config", RECIPE, *small])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(k.startswith("target_head.module.") for k in state) and any(k.startswith("head.") for k in state)
    cli_main(["validate", "--config", RECIPE, *small, f"--ckpt_path={ckpt}"])
