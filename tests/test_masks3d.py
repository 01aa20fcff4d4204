"""Behaviour of the V-JEPA multi-block 3D mask generator."""

from __future__ import annotations

import math
import random

import pytest
import torch

from jepa_lightning.masks import Masks, MultiBlockMask3D


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SHORT = dict(num_blocks=8, spatial_scale=(0.15, 0.15))  # V-JEPA's short-range mask
LONG = dict(num_blocks=2, spatial_scale=(0.7, 0.7))  # V-JEPA's long-range mask
DEFAULTS = dict(
    num_blocks=8,
    spatial_scale=(0.15, 0.15),
    temporal_scale=(1.0, 1.0),
    aspect_ratio=(0.75, 1.5),
    min_keep=1,
    tries=20,
)


# --------------------------------------------------------------------------------------------------
# A slow, obviously-correct per-sample version of the rule, on Python sets.


def ref_size(us, cfg, grid):
    duration, height, width = grid
    u_t, u_s, u_a = us

    def lerp(pair, u):
        return pair[0] + u * (pair[1] - pair[0])

    t = max(1, int(duration * lerp(cfg["temporal_scale"], u_t)))
    area = int(height * width * lerp(cfg["spatial_scale"], u_s))
    a = lerp(cfg["aspect_ratio"], u_a)
    h = min(max(round(math.sqrt(area * a)), 1), height)
    w = min(max(round(math.sqrt(area / a)), 1), width)
    return t, h, w


def ref_batch(rng, batch, grid, cfg):
    """One batch by the rule, before truncation: ((t, h, w), [target set per sample], [levels])."""
    duration, height, width = grid
    n, nb = duration * height * width, cfg["num_blocks"]
    t, h, w = ref_size((rng.random(), rng.random(), rng.random()), cfg, grid)

    def block():
        s, top, left = rng.randint(0, duration - t), rng.randint(0, height - h), rng.randint(0, width - w)
        return {
            (i * height + r) * width + c
            for i in range(s, s + t)
            for r in range(top, top + h)
            for c in range(left, left + w)
        }

    targets, levels = [], []
    for _ in range(batch):
        candidates, chosen = [], None
        for _ in range(cfg["tries"]):
            blocks = [block() for _ in range(nb)]
            candidates.append(blocks)
            union = set().union(*blocks)
            if n - len(union) >= cfg["min_keep"]:
                chosen, level = union, 0
                break
        else:  # relaxation: drop the last `level` blocks of the candidates, in order
            for level in range(1, nb):
                for blocks in candidates:
                    union = set().union(*blocks[: nb - level])
                    if n - len(union) >= cfg["min_keep"]:
                        chosen = union
                        break
                if chosen is not None:
                    break
        targets.append(chosen)
        levels.append(level)
    return (t, h, w), targets, levels


def check_invariants(m: Masks, batch: int, grid, min_keep: int = 1):
    n = math.prod(grid)
    assert isinstance(m, Masks)
    assert m.context.dtype == torch.long and m.targets.dtype == torch.long
    assert m.context.dim() == 2 and m.context.shape[0] == batch
    assert m.targets.dim() == 3 and m.targets.shape[:2] == (batch, 1)
    assert m.context.shape[1] >= min_keep and m.targets.shape[2] >= 1
    assert m.context.shape[1] + m.targets.shape[2] <= n
    for idx in (m.context, m.targets[:, 0]):
        assert idx.min() >= 0 and idx.max() < n
        assert (idx[:, 1:] > idx[:, :-1]).all()  # sorted ascending and unique
    in_target = torch.zeros(batch, n, dtype=torch.bool).scatter_(1, m.targets[:, 0], True)
    assert not in_target.gather(1, m.context).any()  # disjoint


def target_mask(m: Masks, grid) -> torch.Tensor:
    """``[B, T, H, W]`` booleans of the returned targets (pre-truncation when nothing was cut)."""
    b = m.targets.shape[0]
    return torch.zeros(b, math.prod(grid), dtype=torch.bool).scatter_(1, m.targets[:, 0], True).view(b, *grid)


# --------------------------------------------------------------------------------------------------
# Statistics against the reference rule.

STAT_CASES = {
    # V-JEPA's pair on the 16-frame 224px grid.
    "short-8x14x14": dict(grid=(8, 14, 14), cfg=dict(DEFAULTS, **SHORT), calls=200),
    "long-8x14x14": dict(grid=(8, 14, 14), cfg=dict(DEFAULTS, **LONG), calls=200),
    # Hard small grid: two 4x3 tubes cover the plane half the time, so candidates are rejected.
    "long-4x4x4": dict(grid=(4, 4, 4), cfg=dict(DEFAULTS, **LONG), calls=200),
    # Large min_keep: relaxation (dropping blocks) in ~1/3 of the samples; tubes and short blocks.
    "relax-tubes": dict(
        grid=(2, 6, 6),
        cfg=dict(DEFAULTS, num_blocks=4, spatial_scale=(0.25, 0.25), aspect_ratio=(1.0, 1.0), min_keep=40),
        calls=150,
    ),
    "relax-short-time": dict(
        grid=(4, 6, 6),
        cfg=dict(
            DEFAULTS,
            num_blocks=4,
            spatial_scale=(0.25, 0.25),
            temporal_scale=(0.5, 0.5),
            min_keep=95,
            tries=5,
        ),
        calls=150,
    ),
}


def _close(a: list[float], b: list[float], what):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) <= 4.5 * se + 1e-9, (what, a.mean().item(), b.mean().item())
    return a.mean().item()


@pytest.mark.parametrize("name", list(STAT_CASES))
def test_statistics_match_reference_rule(name):
    case = STAT_CASES[name]
    grid, cfg, calls = case["grid"], case["cfg"], case["calls"]
    n, batch = math.prod(grid), 8
    gen = MultiBlockMask3D(**cfg)
    g, rng = _gen(123), random.Random(321)
    ours = {"frac": [], "vol": [], "kt": [], "kc": []}
    ref = {k: [] for k in ours}
    ref_levels = []
    for _ in range(calls):
        # Batch 1: nothing is cut, so the target is the whole union.
        m = gen(1, grid, g)
        check_invariants(m, 1, grid, cfg["min_keep"])
        ours["frac"].append(m.targets.shape[2] / n)
        assert m.targets.shape[2] + m.context.shape[1] == n  # the context is the full complement
        size, targets, levels = ref_batch(rng, 1, grid, cfg)
        ref["frac"].append(len(targets[0]) / n)
        ref_levels += levels
        # Batch 8: cut to the batch minima.
        m = gen(batch, grid, g)
        check_invariants(m, batch, grid, cfg["min_keep"])
        ours["kt"].append(m.targets.shape[2] / n)
        ours["kc"].append(m.context.shape[1] / n)
        size, targets, levels = ref_batch(rng, batch, grid, cfg)
        ref["kt"].append(min(len(s) for s in targets) / n)
        ref["kc"].append(min(n - len(s) for s in targets) / n)
        ref["vol"].append(math.prod(size))
        ref_levels += levels
    for seed in range(calls):  # block volume: one block, its bounding box
        one = MultiBlockMask3D(**dict(cfg, num_blocks=1, min_keep=1))
        ours["vol"].append(one(1, grid, _gen(seed)).targets.shape[2])
    for key in ours:
        _close(ours[key], ref[key], (name, key))
    if name.startswith("relax"):  # the relaxation path really ran in the reference
        assert 0.1 < sum(lv > 0 for lv in ref_levels) / len(ref_levels) < 0.8


def test_vjepa_pair_masking_ratios_on_8x14x14():
    # Measured: the target union covers ~0.63 (short-range) and ~0.81 (long-range) of the tokens,
    # 0.72 averaged over the pair; after cutting to the batch minimum (batch 24, V-JEPA's per-GPU
    # batch) the encoder sees ~0.23 / ~0.06 of the tokens, i.e. ~0.85 masked averaged over the pair
    # (the paper's "~90%").
    grid, n = (8, 14, 14), 8 * 14 * 14
    fracs, seen = {}, {}
    for name, kw in (("short", SHORT), ("long", LONG)):
        gen, g = MultiBlockMask3D(**kw), _gen(9)
        fracs[name] = sum(gen(1, grid, g).targets.shape[2] / n for _ in range(200)) / 200
        seen[name] = sum(gen(24, grid, g).context.shape[1] / n for _ in range(40)) / 40
    assert 0.59 < fracs["short"] < 0.65, fracs
    assert 0.78 < fracs["long"] < 0.84, fracs
    assert 0.69 < (fracs["short"] + fracs["long"]) / 2 < 0.75, fracs
    assert 0.82 < 1 - (seen["short"] + seen["long"]) / 2 < 0.90, seen


def test_block_size_follows_formula_for_the_drawn_u():
    cfg = dict(spatial_scale=(0.1, 0.5), temporal_scale=(0.2, 1.0), aspect_ratio=(0.5, 2.0))
    gen = MultiBlockMask3D(num_blocks=1, **cfg)
    full = dict(cfg, num_blocks=1)
    seen = set()
    for seed in range(40):
        for grid in [(8, 14, 14), (4, 8, 8), (5, 9, 4), (1, 3, 7)]:
            us = torch.rand(3, generator=_gen(seed)).tolist()  # documented: the first draw
            t, h, w = ref_size(us, full, grid)
            m = gen(3, grid, _gen(seed))
            check_invariants(m, 3, grid)
            assert m.targets.shape == (3, 1, t * h * w)
            box = target_mask(m, grid)[1].nonzero()
            extent = (box.max(0).values - box.min(0).values + 1).tolist()
            assert extent == [t, h, w]  # one full t x h x w box
            seen.add((t, h, w))
    assert len(seen) > 20


# --------------------------------------------------------------------------------------------------
# Time extent, coverage, truncation.


@pytest.mark.parametrize("kw", [SHORT, LONG, dict(num_blocks=3, spatial_scale=(0.05, 0.3))])
def test_full_temporal_extent_gives_the_same_target_at_every_time_step(kw):
    gen, g = MultiBlockMask3D(**kw), _gen(10)
    for grid in [(8, 14, 14), (4, 6, 5), (3, 8, 8)]:
        for _ in range(20):
            tm = target_mask(gen(1, grid, g), grid)[0]  # batch 1: nothing cut
            assert tm.any()
            assert (tm == tm[:1]).all()  # a tube through every time step


@pytest.mark.parametrize("grid", [(8, 14, 14), (5, 6, 6), (3, 4, 4)])
def test_partial_temporal_extent_spans_exactly_int_t_steps(grid):
    duration = grid[0]
    t = max(1, int(duration * 0.5))
    g = _gen(11)
    one = MultiBlockMask3D(num_blocks=1, temporal_scale=(0.5, 0.5), spatial_scale=(0.2, 0.2))
    several = MultiBlockMask3D(num_blocks=3, temporal_scale=(0.5, 0.5), spatial_scale=(0.2, 0.2))
    starts = set()
    for _ in range(30):
        tm = target_mask(one(1, grid, g), grid)[0]
        steps = tm.flatten(1).any(1).nonzero().flatten().tolist()
        assert steps == list(range(steps[0], steps[0] + t))  # t consecutive steps
        assert (tm[steps] == tm[steps[0]]).all()  # the same rectangle at each of them
        starts.add(steps[0])
        # Several blocks: at every spatial position the covered steps are runs of >= t steps.
        cols = target_mask(several(1, grid, g), grid)[0].flatten(1).t().tolist()  # [H*W, T]
        for col in cols:
            runs = "".join("1" if x else "0" for x in col).split("0")
            assert all(len(r) >= t for r in runs if r)
    if duration > t:
        assert len(starts) > 1


def test_temporal_range_draws_extents_within_bounds():
    gen, g = MultiBlockMask3D(num_blocks=1, temporal_scale=(0.25, 0.75)), _gen(12)
    extents = set()
    for _ in range(100):
        tm = target_mask(gen(1, (8, 6, 6), g), (8, 6, 6))[0]
        extents.add(int(tm.flatten(1).any(1).sum()))
    assert extents == {2, 3, 4, 5}  # int(8 * s) for s in [0.25, 0.75)


def test_block_corners_uniform_and_coverage_symmetric():
    # Fixed 3x4x4 blocks on 6x7x9: corners uniform over 0..3 x 0..3 x 0..5 inclusive; hit counts are
    # mirror-symmetric along every axis, so the last step/row/column is covered like the first.
    grid = (6, 7, 9)
    gen = MultiBlockMask3D(
        num_blocks=1, temporal_scale=(0.5, 0.5), spatial_scale=(0.26, 0.26), aspect_ratio=(1, 1)
    )
    g = _gen(13)
    corners, hits = [], torch.zeros(grid, dtype=torch.long)
    for _ in range(60):
        m = gen(64, grid, g)  # one block per sample: every row has the same size, nothing is cut
        tm = target_mask(m, grid)
        assert int(tm[0].sum()) == 3 * 4 * 4
        hits += tm.sum(0)
        first = m.targets[:, 0, 0]
        corners.append(torch.stack([first // 63, first // 9 % 7, first % 9], 1))
    corners = torch.cat(corners)
    for axis, count in enumerate((4, 4, 6)):
        counts = torch.bincount(corners[:, axis], minlength=count).double()
        assert counts.numel() == count
        expected = corners.shape[0] / count
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        assert chi2 < 25.0, (axis, counts)  # <= 5 dof: P(chi2 > 25) < 2e-4
    assert (hits > 0).all()
    for axis in range(3):
        flipped = hits.flip(axis)
        z = (hits - flipped).double() / (hits + flipped).double().sqrt()
        assert z.abs().max() < 5.0, axis


def test_tubes_cover_every_time_step_equally():
    grid, g = (8, 14, 14), _gen(14)
    gen = MultiBlockMask3D(**LONG)
    hits = torch.zeros(grid, dtype=torch.long)
    for _ in range(20):
        hits += target_mask(gen(16, grid, g), grid).sum(0)
    per_step = hits.flatten(1).sum(1).double()
    assert (per_step > 0).all()
    assert (per_step.max() - per_step.min()) / per_step.mean() < 0.1, per_step  # only the random cut differs
    assert hits[:, -1].sum() > 0 and hits[:, :, -1].sum() > 0


def test_truncation_keeps_a_random_subset_not_the_first_indices():
    # With tubes the uncut context and target are the same at every time step, so a uniformly random
    # subset has mean time step (T - 1) / 2; keeping the first indices would favour early steps.
    grid, g = (8, 14, 14), _gen(15)
    for kw in (SHORT, LONG):
        gen = MultiBlockMask3D(**kw)
        ctx_t, tgt_t = [], []
        for _ in range(20):
            m = gen(16, grid, g)
            ctx_t.append((m.context // 196).double().mean())
            tgt_t.append((m.targets // 196).double().mean())
        assert abs(torch.stack(ctx_t).mean() - 3.5) < 0.15, kw
        assert abs(torch.stack(tgt_t).mean() - 3.5) < 0.1, kw


def test_max_keep_caps_the_context():
    gen, g = MultiBlockMask3D(max_keep=50, min_keep=5), _gen(16)
    for _ in range(10):
        m = gen(4, (8, 14, 14), g)
        check_invariants(m, 4, (8, 14, 14), 5)
        assert m.context.shape[1] == 50  # the short-range context is always larger than 50
    with pytest.raises(ValueError, match="max_keep"):
        MultiBlockMask3D(min_keep=10, max_keep=5)


# --------------------------------------------------------------------------------------------------
# Robustness, seeding, errors.


def test_small_grid_two_large_tubes_always_leave_a_context():
    gen, g = MultiBlockMask3D(**LONG), _gen(17)
    for _ in range(500):
        check_invariants(gen(4, (4, 4, 4), g), 4, (4, 4, 4), 1)
    # One 4x3 tube leaves 16 tokens: min_keep=16 always succeeds, dropping the second block if needed.
    strict = MultiBlockMask3D(**LONG, min_keep=16)
    for _ in range(200):
        check_invariants(strict(4, (4, 4, 4), g), 4, (4, 4, 4), 16)


@pytest.mark.parametrize("batch", [1, 2, 16])
@pytest.mark.parametrize(
    "grid,kw",
    [
        ((8, 14, 14), SHORT),
        ((8, 14, 14), LONG),
        ((4, 8, 8), dict(num_blocks=3, spatial_scale=(0.1, 0.4), temporal_scale=(0.3, 1.0))),
        ((1, 5, 3), dict(num_blocks=2, spatial_scale=(0.2, 0.6), aspect_ratio=(0.3, 3.0))),
    ],
)
def test_invariants(grid, kw, batch):
    gen, g = MultiBlockMask3D(**kw), _gen(18)
    for _ in range(5):
        check_invariants(gen(batch, grid, g), batch, grid)


def test_tiny_grids_terminate_with_valid_masks_or_value_error():
    raised = returned = 0
    for grid in [(1, 1, 1), (1, 1, 2), (2, 1, 1), (1, 2, 2), (2, 3, 3), (4, 4, 4), (3, 1, 5)]:
        n = math.prod(grid)
        for min_keep in (1, 2, 5, 20):
            for kw in (SHORT, LONG, dict(num_blocks=3, spatial_scale=(1.0, 1.0), temporal_scale=(0.3, 0.6))):
                gen = MultiBlockMask3D(**kw, min_keep=min_keep)
                for seed in range(3):
                    try:
                        m = gen(3, grid, _gen(seed))
                    except ValueError as e:
                        assert f"min_keep={min_keep}" in str(e) and "x".join(map(str, grid)) in str(e)
                        raised += 1
                        continue
                    assert min_keep < n
                    check_invariants(m, 3, grid, min_keep)
                    returned += 1
    assert raised > 0 and returned > 0


def test_impossible_requests_raise_on_the_first_call():
    # The largest block of 0.7 on 4x4 is a 4x3 tube (48 of 64 tokens): 16 tokens left. A min_keep that only
    # some reachable block sizes meet fails on the first call, whatever the seed (never at a random later step).
    for seed in range(20):
        gen = MultiBlockMask3D(**LONG, min_keep=17)
        with pytest.raises(ValueError, match=r"min_keep=17.*largest reachable.*4x(3x4|4x3) .*4x4x4"):
            gen(2, (4, 4, 4), _gen(seed))
    # A block covering the whole grid leaves nothing.
    whole = MultiBlockMask3D(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"min_keep=1.*8x14x14"):
        whole(2, (8, 14, 14), _gen(0))
    # min_keep=16 is met by every reachable block: no call raises.
    edge = MultiBlockMask3D(**LONG, min_keep=16)
    for seed in range(40):
        check_invariants(edge(2, (4, 4, 4), _gen(seed)), 2, (4, 4, 4), 16)


def test_same_seed_same_masks_different_seed_differs():
    for kw in (SHORT, LONG):
        gen = MultiBlockMask3D(**kw)
        a = gen(8, (8, 14, 14), _gen(7))
        b = gen(8, (8, 14, 14), _gen(7))
        c = gen(8, (8, 14, 14), _gen(8))
        assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
        assert a.context.shape != c.context.shape or not torch.equal(a.context, c.context)
        assert a.targets.shape != c.targets.shape or not torch.equal(a.targets, c.targets)


def test_no_generator_uses_global_rng():
    gen = MultiBlockMask3D()
    torch.manual_seed(11)
    a = gen(4, (8, 14, 14))
    torch.manual_seed(11)
    b = gen(4, (8, 14, 14))
    c = gen(4, (8, 14, 14))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert a.context.shape != c.context.shape or not torch.equal(a.context, c.context)


def test_device_handling():
    gen = MultiBlockMask3D()
    m = gen(2, (4, 8, 8), _gen(0), device="cpu")
    assert m.context.device.type == "cpu" and m.targets.device.type == "cpu"
    with pytest.raises(ValueError, match="generator is on cpu"):
        gen(2, (4, 8, 8), _gen(0), device="meta")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_blocks=0),
        dict(num_blocks=2.5),
        dict(num_blocks=True),
        dict(min_keep=0),
        dict(max_keep=0),
        dict(tries=0),
        dict(spatial_scale=(0.0, 0.2)),
        dict(spatial_scale=(0.3, 0.2)),
        dict(spatial_scale=(0.9, 1.1)),
        dict(temporal_scale=(0.0, 1.0)),
        dict(temporal_scale=(1.0, 1.5)),
        dict(aspect_ratio=(0.0, 1.0)),
        dict(aspect_ratio=(2.0, 1.0)),
        dict(aspect_ratio=(1.0, float("inf"))),
        dict(spatial_scale=(0.1,)),
        dict(temporal_scale="full"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        MultiBlockMask3D(**kwargs)


def test_call_rejects_bad_arguments():
    gen = MultiBlockMask3D()
    with pytest.raises(ValueError, match="batch_size"):
        gen(0, (8, 14, 14))
    with pytest.raises(ValueError, match="grid"):
        gen(2, (8, 0, 14))
    with pytest.raises(ValueError, match="grid_size"):
        gen(2, (14, 14))


def test_repr_names_every_argument():
    r = repr(MultiBlockMask3D(num_blocks=2, spatial_scale=(0.7, 0.7), max_keep=100))
    assert r.startswith("MultiBlockMask3D(num_blocks=2, spatial_scale=(0.7, 0.7)")
    for name in ("temporal_scale", "aspect_ratio", "min_keep", "max_keep=100", "tries"):
        assert name in r
