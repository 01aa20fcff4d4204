"""Behaviour of the I-JEPA multi-block mask generator and the mask helpers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from jepa_lightning.masks import Masks, MultiBlockMask2D, step_generator


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# A slow, obviously-correct per-sample version of the I-JEPA rule (with the last-row/column fix).


def ref_block_size(u, scale, aspect, height, width):
    s = scale[0] + u * (scale[1] - scale[0])
    max_keep = int(height * width * s)
    a = aspect[0] + u * (aspect[1] - aspect[0])
    h = round(math.sqrt(max_keep * a))
    w = round(math.sqrt(max_keep / a))
    return min(max(h, 1), height), min(max(w, 1), width)


def ref_rule_batch(rng, batch, height, width, cfg):
    """One batch by the reference rule: ((h, w), [targets per sample], [context per sample])."""
    h, w = ref_block_size(rng.random(), cfg["target_scale"], cfg["target_aspect"], height, width)
    hc, wc = ref_block_size(rng.random(), cfg["context_scale"], (1.0, 1.0), height, width)

    def block(bh, bw):
        top, left = rng.randint(0, height - bh), rng.randint(0, width - bw)  # inclusive bounds
        return {r * width + c for r in range(top, top + bh) for c in range(left, left + bw)}

    all_targets, contexts = [], []
    for _ in range(batch):
        targets = [block(h, w) for _ in range(cfg["num_targets"])]
        level, fails = 0, 0
        while True:
            ctx = block(hc, wc)
            for t in targets[: max(len(targets) - level, 0)]:
                ctx -= t
            if len(ctx) >= cfg["min_keep"]:
                break
            fails += 1
            if fails == cfg["context_tries"]:
                level, fails = level + 1, 0
        all_targets.append(targets)
        contexts.append(ctx)
    k = min(len(c) for c in contexts)
    contexts = [set(rng.sample(sorted(c), k)) for c in contexts]
    return (h, w), all_targets, contexts


def batch_stats(hw, targets, contexts, width):
    """Per-batch statistics: target area, aspect, context size, context patches inside targets,
    mean row of context patches, fraction of the grid covered by targets."""
    h, w = hw
    n_overlap, rows, covered = 0, 0.0, 0
    for tgts, ctx in zip(targets, contexts):
        union = set().union(*tgts)
        n_overlap += len(ctx & union)
        rows += sum(i // width for i in ctx) / len(ctx)
        covered += len(union)
    b = len(contexts)
    return {
        "area": h * w,
        "aspect": h / w,
        "context": len(contexts[0]),
        "overlap": n_overlap / b,
        "row": rows / b,
        "covered": covered / b,
    }


def ours_as_sets(masks: Masks, width: int):
    tg = masks.targets
    rows, cols = tg[0, 0] // width, tg[0, 0] % width
    hw = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    targets = [[set(t.tolist()) for t in per_sample] for per_sample in tg]
    contexts = [set(c.tolist()) for c in masks.context]
    return hw, targets, contexts


CONFIGS = {
    # Default I-JEPA config on the ViT-B/16 grid: the context always fits beside the targets.
    "14x14": dict(grid=(14, 14), batch=8, batches=200, min_keep=10),
    # Small grid and large min_keep: relaxation (context overlapping targets) is frequent.
    "8x8-relax": dict(grid=(8, 8), batch=8, batches=300, min_keep=28),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_statistics_match_reference_rule(name):
    c = CONFIGS[name]
    cfg = dict(
        num_targets=4,
        target_scale=(0.15, 0.2),
        target_aspect=(0.75, 1.5),
        context_scale=(0.85, 1.0),
        min_keep=c["min_keep"],
        context_tries=20,
    )
    (height, width), batch = c["grid"], c["batch"]
    gen = MultiBlockMask2D(**cfg)
    g, rng = _gen(123), random.Random(321)
    ours, ref = [], []
    for _ in range(c["batches"]):
        ours.append(batch_stats(*ours_as_sets(gen(batch, (height, width), g), width), width))
        ref.append(batch_stats(*ref_rule_batch(rng, batch, height, width, cfg), width))
    for key in ours[0]:
        a = torch.tensor([s[key] for s in ours], dtype=torch.float64)
        b = torch.tensor([s[key] for s in ref], dtype=torch.float64)
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se + 1e-9, (name, key, a.mean().item(), b.mean().item())
    if name == "8x8-relax":  # the relaxation path really ran, in both
        assert sum(s["overlap"] for s in ours) > 0 and sum(s["overlap"] for s in ref) > 0


def test_block_sizes_follow_formula_for_the_drawn_u():
    cfg = dict(target_scale=(0.1, 0.4), target_aspect=(0.5, 2.0), context_scale=(0.3, 1.0))
    gen = MultiBlockMask2D(num_targets=2, allow_overlap=True, min_keep=1, **cfg)
    seen = set()
    for seed in range(60):
        for height, width in [(14, 14), (8, 8), (9, 5)]:
            u_t, u_c = torch.rand(2, generator=_gen(seed)).tolist()  # documented: the first draw
            masks = gen(3, (height, width), _gen(seed))
            h, w = ref_block_size(u_t, cfg["target_scale"], cfg["target_aspect"], height, width)
            hc, wc = ref_block_size(u_c, cfg["context_scale"], (1.0, 1.0), height, width)
            assert masks.targets.shape == (3, 2, h * w)
            assert masks.context.shape == (3, hc * wc)
            for idx, (bh, bw) in [(masks.targets[1, 1], (h, w)), (masks.context[2], (hc, wc))]:
                top, left = int(idx[0]) // width, int(idx[0]) % width
                block = [(top + r) * width + left + c for r in range(bh) for c in range(bw)]
                assert idx.tolist() == block  # a full h x w rectangle, row-major
            seen.add((h, w))
    assert len(seen) > 5


@pytest.mark.parametrize("grid", [(14, 14), (8, 8), (7, 5)])
def test_every_patch_can_be_covered(grid):
    height, width = grid
    n = height * width
    gen = MultiBlockMask2D(min_keep=4)
    g = _gen(0)
    target_hits = torch.zeros(n, dtype=torch.long)
    context_hits = torch.zeros(n, dtype=torch.long)
    for _ in range(40):
        m = gen(16, grid, g)
        target_hits += torch.bincount(m.targets.flatten(), minlength=n)
        context_hits += torch.bincount(m.context.flatten(), minlength=n)
    assert (target_hits > 0).all(), target_hits.view(grid)
    assert (context_hits > 0).all(), context_hits.view(grid)
    last_row = torch.arange((height - 1) * width, n)
    last_col = torch.arange(width - 1, n, width)
    for hits in (target_hits, context_hits):
        assert (hits[last_row] > 0).all() and (hits[last_col] > 0).all()


def test_target_corners_are_uniform_over_all_positions():
    # Fixed 6x6 targets on 14x14: top and left must be uniform over 0..8 inclusive.
    gen = MultiBlockMask2D(target_scale=(0.2, 0.2), target_aspect=(1.0, 1.0), allow_overlap=True)
    g = _gen(1)
    tops = torch.cat([gen(16, (14, 14), g).targets[..., 0].flatten() // 14 for _ in range(100)])
    counts = torch.bincount(tops, minlength=9).double()
    assert counts.numel() == 9  # never beyond 14 - 6
    expected = tops.numel() / 9
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 30.0, counts  # 8 dof: P(chi2 > 30) ~ 2e-4


@pytest.mark.parametrize("grid,num_targets", [((14, 14), 4), ((10, 10), 2), ((16, 12), 6)])
def test_context_and_targets_disjoint(grid, num_targets):
    gen = MultiBlockMask2D(num_targets=num_targets, target_scale=(0.1, 0.15), min_keep=4)
    g = _gen(2)
    for _ in range(30):
        m = gen(8, grid, g)
        in_target = torch.zeros(8, grid[0] * grid[1], dtype=torch.bool).scatter_(
            1, m.targets.flatten(1), True
        )
        assert not in_target.gather(1, m.context).any()


def test_relaxation_keeps_min_keep():
    gen = MultiBlockMask2D(num_targets=6, target_scale=(0.2, 0.3), min_keep=25)
    g = _gen(3)
    overlapped = 0
    for _ in range(30):
        m = gen(8, (8, 8), g)
        assert m.context.shape[1] >= 25
        in_target = torch.zeros(8, 64, dtype=torch.bool).scatter_(1, m.targets.flatten(1), True)
        overlapped += int(in_target.gather(1, m.context).any())
    assert overlapped > 0  # the constraint really was relaxed


def check_invariants(m: Masks, batch: int, grid, num_targets: int, min_keep: int = 1):
    n = grid[0] * grid[1]
    assert isinstance(m, Masks)
    assert m.context.dtype == torch.long and m.targets.dtype == torch.long
    assert m.context.dim() == 2 and m.context.shape[0] == batch
    assert m.targets.dim() == 3 and m.targets.shape[:2] == (batch, num_targets)
    assert m.context.shape[1] >= min_keep and m.targets.shape[2] >= 1
    for idx in (m.context, m.targets.flatten(0, 1)):
        assert idx.min() >= 0 and idx.max() < n
        assert (idx[:, 1:] > idx[:, :-1]).all()  # sorted ascending and unique


@pytest.mark.parametrize("allow_overlap", [False, True])
@pytest.mark.parametrize("grid", [(14, 14), (6, 6), (5, 9)])
def test_equal_counts_sorted_unique_in_range(grid, allow_overlap):
    gen = MultiBlockMask2D(min_keep=3, allow_overlap=allow_overlap)
    g = _gen(4)
    for batch in (1, 2, 16):
        for _ in range(10):
            check_invariants(gen(batch, grid, g), batch, grid, 4, 3)


def test_truncation_keeps_a_random_subset():
    # 3x3 context block and one 2x2 target on 6x6: counts differ, so rows are cut to the batch minimum.
    # Where the kept patches span 3x3, the block is their bounding box and the full context is known.
    gen = MultiBlockMask2D(
        num_targets=1,
        target_scale=(0.1, 0.1),
        target_aspect=(1.0, 1.0),
        context_scale=(0.25, 0.25),
        min_keep=1,
    )
    g = _gen(5)
    cut = not_prefix = 0
    for _ in range(50):
        m = gen(16, (6, 6), g)
        for ctx, tgt in zip(m.context.tolist(), m.targets[:, 0].tolist()):
            r0, c0 = min(i // 6 for i in ctx), min(i % 6 for i in ctx)
            if max(i // 6 for i in ctx) != r0 + 2 or max(i % 6 for i in ctx) != c0 + 2:
                continue
            full = sorted({(r0 + r) * 6 + c0 + c for r in range(3) for c in range(3)} - set(tgt))
            assert set(ctx) <= set(full)
            if len(full) > len(ctx):
                cut += 1
                not_prefix += ctx != full[: len(ctx)]
    assert cut > 50 and not_prefix > cut / 2, (cut, not_prefix)


def test_same_seed_same_masks_different_seed_differs():
    gen = MultiBlockMask2D()
    a = gen(16, (14, 14), _gen(7))
    b = gen(16, (14, 14), _gen(7))
    c = gen(16, (14, 14), _gen(8))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert a.context.shape != c.context.shape or not torch.equal(a.context, c.context)
    assert a.targets.shape != c.targets.shape or not torch.equal(a.targets, c.targets)


def test_no_generator_uses_global_rng():
    gen = MultiBlockMask2D()
    torch.manual_seed(11)
    a = gen(4, (14, 14))
    torch.manual_seed(11)
    b = gen(4, (14, 14))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)


def test_step_generator_is_deterministic_and_mixes_all_fields():
    def draw(*triple):
        return torch.randint(0, 2**62, (4,), generator=step_generator(*triple, device="cpu")).tolist()

    triples = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 1, 0), (2, 3, 1000), (3, 2, 1000)]
    draws = [draw(*t) for t in triples]
    assert len({tuple(d) for d in draws}) == len(triples)
    assert draw(2, 3, 1000) == draw(2, 3, 1000)
    assert step_generator(0, 0, 0, "cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="step"):
        step_generator(0, 0, -1, "cpu")
    gen = MultiBlockMask2D()
    m1 = gen(8, (14, 14), step_generator(0, 0, 5, "cpu"))
    m2 = gen(8, (14, 14), step_generator(0, 0, 5, "cpu"))
    assert torch.equal(m1.context, m2.context) and torch.equal(m1.targets, m2.targets)


def test_tiny_grids_terminate_with_valid_masks_or_value_error():
    grids = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 7), (7, 1), (2, 3), (4, 4)]
    raised = returned = 0
    for grid in grids:
        n = grid[0] * grid[1]
        for min_keep in (1, 2, 3, 4, 5, 9, 20):
            for num_targets in (1, 3):
                for allow_overlap in (False, True):
                    gen = MultiBlockMask2D(
                        num_targets=num_targets, min_keep=min_keep, allow_overlap=allow_overlap
                    )
                    for seed in range(3):
                        try:
                            m = gen(4, grid, _gen(seed))
                        except ValueError as e:
                            assert min_keep > 1, (grid, min_keep, e)  # min_keep=1 is always possible
                            assert f"min_keep={min_keep}" in str(e) and f"{grid[0]}x{grid[1]}" in str(e)
                            raised += 1
                            continue
                        assert min_keep <= n
                        check_invariants(m, 4, grid, num_targets, min_keep)
                        returned += 1
    assert raised > 0 and returned > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_targets=0),
        dict(num_targets=1.5),
        dict(min_keep=0),
        dict(context_tries=0),
        dict(target_scale=(0.0, 0.2)),
        dict(target_scale=(0.3, 0.2)),
        dict(context_scale=(0.9, 1.1)),
        dict(target_aspect=(0.0, 1.0)),
        dict(context_aspect=(2.0, 1.0)),
        dict(target_scale=(0.1,)),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        MultiBlockMask2D(**kwargs)


def test_call_rejects_bad_arguments():
    gen = MultiBlockMask2D()
    with pytest.raises(ValueError, match="batch_size"):
        gen(0, (14, 14))
    with pytest.raises(ValueError, match="grid"):
        gen(2, (14, 0))
    with pytest.raises(ValueError, match="grid_size"):
        gen(2, (14,))
