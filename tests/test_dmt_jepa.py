"""DMT-JEPA: neighbour selection vs a brute-force reference, batch alignment, the scenes data, the patch-level
evaluation, learning, the CLI recipe and the benchmark's smoke run."""


import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_script
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
def brute_force_neighbours(feats, positions, grid, query_slot, window, k):
    """Plain-Python reference: the (slot, similarity) of the top-k visible window neighbours of one token."""
    height, width = grid
    slot_at = {int(p): s for s, p in enumerate(positions)}
    y, x = divmod(int(positions[query_slot]), width)
    f = F.normalize(F.layer_norm(feats, feats.shape[-1:]), dim=-1)
    cands = []
    r = window // 2
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ny, nx = y + dy, x + dx
            if (dy, dx) == (0, 0) or not (0 <= ny < height and 0 <= nx < width):
                continue
            if ny * width + nx in slot_at:
                s = slot_at[ny * width + nx]
                cands.append((float(f[query_slot] @ f[s]), s))
    return sorted(cands, reverse=True)[:k]


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
def test_selection_matches_brute_force_on_full_grid_and_on_a_visible_subset(window, k):
    torch.manual_seed(0)
    head = LocalAggregationHead(16, num_heads=2, window=window, k=k)
    grid, B, n = (4, 5), 3, 20
    feats = torch.randn(B, n, 16)
    full = torch.arange(n).expand(B, n)
    slots, valid = head.select(feats, full, grid, full)
    for b in range(B):
        for q in range(n):
            ref = brute_force_neighbours(feats[b], full[b], grid, q, window, k)
            got = [int(s) for s, v in zip(slots[b, q], valid[b, q]) if v]
            assert got == [s for _, s in ref], (b, q)  # same neighbours, in decreasing similarity
    # a visible subset (the context): neighbours come from visible tokens only, slots index the subset
    keep = torch.stack([torch.randperm(n)[:11].sort().values for _ in range(B)])
    sub = torch.stack([feats[b, keep[b]] for b in range(B)])
    queries = torch.tensor([[0, 4, 10]] * B)
    slots, valid = head.select(sub, keep, grid, queries)
    for b in range(B):
        for j, q in enumerate(queries[b].tolist()):
            ref = brute_force_neighbours(sub[b], keep[b], grid, q, window, k)
            assert [int(s) for s, v in zip(slots[b, j], valid[b, j]) if v] == [s for _, s in ref]
    assert not valid.all()  # some subset tokens have fewer than k visible neighbours: masked, not invented


def test_output_depends_only_on_the_selected_neighbours():
    torch.manual_seed(1)
    head = LocalAggregationHead(16, num_heads=2, k=2).eval()
    feats = torch.randn(1, 16, 16)
    pos = torch.arange(16)[None]
    q = torch.tensor([[5]])
    slots, _ = head.select(feats, pos, (4, 4), q)
    out = head(feats, pos, (4, 4), q)
    chosen = set(slots[0, 0].tolist())
    other = next(i for i in neighbour_table((4, 4), 3)[5].tolist() if i not in chosen)
    far = feats.clone()
    far[0, 15] += 5.0  # not a neighbour of patch 5
    assert torch.allclose(head(far, pos, (4, 4), q), out, atol=1e-6)
    scaled = feats.clone()
    scaled[0, other] *= 0.01  # a neighbour that was not selected, moved further away (less similar)
    scaled[0, other] -= feats[0, 5]
    slots2, _ = head.select(scaled, pos, (4, 4), q)
    assert set(slots2[0, 0].tolist()) == chosen
    assert torch.allclose(head(scaled, pos, (4, 4), q), out, atol=1e-6)
    moved = feats.clone()
    moved[0, slots[0, 0, 0]] += 0.5 * feats[0, 5]  # a selected neighbour changes: the output changes
    assert not torch.allclose(head(moved, pos, (4, 4), q), out, atol=1e-4)


def test_batch_alignment_each_sample_uses_only_its_own_tokens():
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2").eval()
    x = torch.randn(3, 3, 16, 16)
    m = model.masks(3, (4, 4), generator=torch.Generator().manual_seed(0))
    _, targets, _ = model.forward_loss(x, m)
    x2 = x.clone()
    x2[1] = torch.randn(3, 16, 16)  # perturb sample 1 only
    _, targets2, _ = model.forward_loss(x2, m)
    assert torch.equal(targets[0], targets2[0]) and torch.equal(targets[2], targets2[2])
    assert not torch.allclose(targets[1], targets2[1])
    # the batched targets equal per-sample runs (a `repeat`-style misalignment mixes samples and fails this)
    h = F.layer_norm(model.teacher(x), (32,))
    every = torch.arange(16).expand(3, 16)
    q = m.targets.flatten(1)
    batched = model.target_head(h, every, (4, 4), q)
    single = torch.cat([model.target_head(h[b:b + 1], every[:1], (4, 4), q[b:b + 1]) for b in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)
    # the context side too
    z = model.encoder(x, keep=m.context)
    ctx = model.head(z, m.context, (4, 4))
    single = torch.cat([model.head(z[b:b + 1], m.context[b:b + 1], (4, 4)) for b in range(3)])
    assert torch.allclose(ctx, single, atol=1e-5)


def test_targets_gradients_and_ema_head():
    torch.manual_seed(0)
    model = tiny_dmt(loss="l2")
    x = torch.randn(2, 3, 16, 16)
    m = model.masks(2, (4, 4), generator=torch.Generator().manual_seed(0))
    loss, targets, features = model.forward_loss(x, m)
    b, t, k = m.targets.shape
    assert targets.shape == (b, t, k, 32) and features.shape == (2, 32)
    assert torch.allclose(targets.mean(-1), torch.zeros(b, t, k), atol=1e-5)  # the head ends in a LayerNorm
    loss.backward()
    assert model.head.blocks[0].xattn.q.weight.grad is not None  # the context-side head learns
    assert all(p.grad is None for p in model.target_head.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    names = {type(mod).__name__ for mod in model.trainable_modules()}
    assert "LocalAggregationHead" in names and "EMATeacher" not in names


def test_bad_configuration_errors_name_the_value():
    with pytest.raises(ValueError, match=r"k must be in \[1, 8\] for window=3.*got 9"):
        LocalAggregationHead(32, k=9)
    with pytest.raises(ValueError, match="window must be an odd integer >= 3, got 4"):
        LocalAggregationHead(32, window=4)
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
    assert last < 0.7 * first, (first, last)
    assert not torch.equal(model.target_head.module.blocks[0].xattn.q.weight, head0)  # EMA moved
    assert not torch.equal(model.target_head.module.blocks[0].xattn.q.weight, model.head.blocks[0].xattn.q.weight)


def test_cli_fit_then_validate_on_the_tiny_recipe(tmp_path):
    small = ["--model.init_args.encoder.init_args.depth=1", "--model.init_args.predictor.init_args.depth=1",
             "--data.init_args.num_train=128", "--data.init_args.num_val=64", "--data.init_args.batch_size=32",
             "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
             "--trainer.enable_model_summary=false",
             f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    cli_main(["fit", "--config", RECIPE, *small])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(k.startswith("target_head.module.") for k in state) and any(k.startswith("head.") for k in state)
    cli_main(["validate", "--config", RECIPE, *small, f"--ckpt_path={ckpt}"])


def test_benchmark_quick_smoke_run():
    result = run_script("benchmarks/fidelity/dmt_jepa.py", "--quick")
    assert {r["method"] for r in result["runs"]} == {"ijepa", "dmt_jepa"}
    for metric in ("patch_knn_miou", "patch_linear_miou", "image_linear_acc", "image_knn_acc"):
        assert set(result[metric]) >= {"ijepa", "dmt_jepa", "dmt_minus_ijepa"}
        assert 0.0 <= result[metric]["dmt_jepa"]["mean"] <= 1.0
    assert len(result["claims"]) == 2 and all(isinstance(c["holds"], bool) for c in result["claims"])
