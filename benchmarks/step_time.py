"""I-JEPA training-step speed on this machine: ms/step, tokens/s, model FLOP/s and MFU, mask time share.

    python benchmarks/step_time.py [--img 96 --patch 16 --batch 16 --steps 20]

One step is the whole I-JEPA update the Trainer runs: masks for the batch, teacher forward, context-encoder
and predictor forward/backward, fused AdamW step, fused EMA update. FLOPs are counted once with
`jepa_lightning.eval.flops.flop_counter` (torch's FlopCounterMode + CPU fused attention); MFU divides the step's FLOP/s by the matmul peak measured on
the same machine, same threads, in the same run (large square fp32 matmuls). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from jepa_lightning.eval.flops import flop_counter
from jepa_lightning.masks import MultiBlockMask2D, step_generator
from jepa_lightning.methods import IJEPA
from jepa_lightning.nn import TransformerPredictor, VisionTransformer
from jepa_lightning.optim import param_groups


def matmul_peak(seconds: float = 2.0) -> float:
    """Best sustained fp32 FLOP/s of large square matmuls (the roofline the step is compared with)."""
    best = 0.0
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def build(img: int, patch: int, embed_dim: int, depth: int, heads: int, pred_dim: int, pred_depth: int):
    enc = VisionTransformer(img_size=img, patch_size=patch, embed_dim=embed_dim, depth=depth, num_heads=heads)
    pred = TransformerPredictor(grid_size=enc.grid_size, embed_dim=embed_dim, predictor_dim=pred_dim,
                                depth=pred_depth, num_heads=heads)
    return IJEPA(enc, pred, masks=MultiBlockMask2D(min_keep=4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img", type=int, default=96)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--embed-dim", type=int, default=384)   # ViT-S
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--pred-dim", type=int, default=384)
    ap.add_argument("--pred-depth", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print the torch profiler's top ops to stderr")
    ap.add_argument("--peak-seconds", type=float, default=3.0, help="time spent measuring the matmul peak")
    args = ap.parse_args()
    torch.manual_seed(0)

    model = build(args.img, args.patch, args.embed_dim, args.depth, args.heads, args.pred_dim, args.pred_depth)
    model.train()
    opt = torch.optim.AdamW(param_groups(model.trainable_modules(), 0.04), lr=1e-4, fused=True)
    x = torch.randn(args.batch, 3, args.img, args.img)
    grid = model.encoder.grid_size

    def masks(step: int):
        return model.masks(args.batch, grid, generator=step_generator(0, 0, step))

    def step(m) -> None:
        loss = model.forward_loss(x, m)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.teacher.update(model.encoder, 0.996)

    m = masks(0)
    with flop_counter() as counter:
        loss = model.forward_loss(x, m)[0]
        loss.backward()
    flops = counter.get_total_flops()
    opt.zero_grad(set_to_none=True)

    step_times, mask_times = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        m = masks(i)
        t1 = time.perf_counter()
        step(m)
        t2 = time.perf_counter()
        if i >= args.warmup:
            mask_times.append(t1 - t0)
            step_times.append(t2 - t0)
    if args.profile:
        with torch.profiler.profile() as prof:
            for i in range(3):
                step(masks(i))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)
    step_s = statistics.median(step_times)
    mask_s = statistics.median(mask_times)
    peak = matmul_peak(args.peak_seconds)
    tokens = args.batch * model.encoder.num_patches
    print(json.dumps({
        "benchmark": "ijepa_step_time",
        "config": {"encoder": f"ViT dim {args.embed_dim} depth {args.depth}", "img": args.img,
                   "patch": args.patch, "batch": args.batch, "predictor": f"dim {args.pred_dim} depth {args.pred_depth}",
                   "context_tokens": int(m.context.shape[1]), "target_tokens": int(m.targets[0].numel())},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "ms_per_step": round(step_s * 1e3, 2),
        "tokens_per_s": round(tokens / step_s, 1),
        "model_gflop_per_step": round(flops / 1e9, 3),
        "model_gflop_per_s": round(flops / step_s / 1e9, 2),
        "matmul_peak_gflop_per_s": round(peak / 1e9, 2),
        "mfu": round(flops / step_s / peak, 4),
        "mask_ms": round(mask_s * 1e3, 3),
        "mask_share_of_step": round(mask_s / step_s, 5),
    }, indent=2))


if __name__ == "__main__":
    main()
