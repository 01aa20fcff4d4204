"""One training step of a paper-size I-JEPA on one device: step time, TFLOP/s, MFU, memory; eager vs torch.compile.

    python benchmarks/paper_step.py --device cuda [--arch vit_large --batch 64 --steps 20 --warmup 5]
    python benchmarks/paper_step.py --quick            # CPU smoke: a tiny ViT, 2 timed steps

The model is our `IJEPA` (ViT-L/16 at 224 px, predictor 384-d x 12: the I-JEPA paper's ViT-L/16 set-up) built
directly, not through a recipe; a step is the Lightning step's work without Lightning: fresh multi-block masks
(their token counts change every step, as in training), the teacher forward, the student and predictor forward
and backward under bf16 autocast, an AdamW step and the EMA update, on random images already on the device (no
data loading). FLOPs are counted once (`flop_counter`: matmul and attention, forward and backward); MFU is the
achieved TFLOP/s over `--peak-tflops` (H100/H200 SXM dense bf16: 989). With `--compile` the student encoder, the
teacher and the predictor go through `torch.compile` block by block (`nn.compile_blocks`, as a recipe's
`compile: true`; until 2026-12-06 whole networks were compiled); the number of graphs compiled over the
timed steps says whether the changing mask sizes recompile (torch marks a dimension dynamic after it changes
once). Prints one JSON object (`--out` also writes it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jepa_lightning.eval.flops import flop_counter  # noqa: E402
from jepa_lightning.masks import MultiBlockMask2D  # noqa: E402
from jepa_lightning.methods import IJEPA  # noqa: E402
from jepa_lightning.nn import TransformerPredictor, VisionTransformer  # noqa: E402
from jepa_lightning.nn.transformer import compile_blocks  # noqa: E402
from jepa_lightning.targets import ema_update  # noqa: E402

ARCHS = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12),
         "vit_large": (1024, 24, 16), "vit_huge": (1280, 32, 16)}


def build(arch: str, img: int, patch: int, pred_dim: int, pred_depth: int) -> IJEPA:
    dim, depth, heads = ARCHS[arch]
    encoder = VisionTransformer(img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads)
    predictor = TransformerPredictor(grid_size=encoder.grid_size, embed_dim=dim, predictor_dim=pred_dim,
                                     depth=pred_depth, num_heads=heads)
    masks = MultiBlockMask2D(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                             context_scale=(0.85, 1.0), min_keep=10)
    return IJEPA(encoder, predictor, masks=masks)


def run(args: argparse.Namespace, compiled: str | None) -> dict:
    """One arm: eager (`compiled` None) or torch.compile with `dynamic` = None ("auto": torch's default, a dimension
    becomes symbolic once it changed) or True ("dynamic": symbolic from the first compile)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build(args.arch, args.img, args.patch, args.pred_dim, args.pred_depth).to(device).train()
    student = [p for m in (model.encoder, model.predictor) for p in m.parameters()]
    opt = torch.optim.AdamW(student, lr=1e-4, weight_decay=0.04, fused=device.type == "cuda")
    if compiled:
        torch._dynamo.reset()
        dynamic = {"auto": None, "dynamic": True}[compiled]
        for net in (model.encoder, model.predictor, model.teacher.module):
            compile_blocks(net, dynamic=dynamic)  # what a recipe's `compile: true` does
    x = torch.randn(args.batch, 3, args.img, args.img, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    sizes = []

    def step() -> None:
        m = model.masks(args.batch, model.encoder.grid_size, generator=g, device=device)
        sizes.append((int(m.context.shape[1]), int(m.targets.shape[-1])))
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model.forward_loss(x, m)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(model.teacher.module, model.encoder, 0.996)

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    t0 = sync()
    step()  # the first step: compilation, cuDNN/cuBLAS set-up
    first = sync() - t0
    for _ in range(args.warmup - 1):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    graphs_before = _graphs()
    for _ in range(args.steps):
        t = sync()
        step()
        times.append(sync() - t)
    flops = None
    if not compiled:  # counted on the eager model (the same arithmetic)
        with flop_counter() as counter:
            step()
        flops = counter.get_total_flops()
    out = {"compiled": compiled, "first_step_seconds": round(first, 2),
           "step_seconds": round(statistics.median(times), 4), "step_seconds_mean": round(statistics.mean(times), 4),
           "images_per_second": round(args.batch / statistics.median(times), 1),
           "context_tokens_range": [min(s[0] for s in sizes), max(s[0] for s in sizes)],
           "target_tokens_range": [min(s[1] for s in sizes), max(s[1] for s in sizes)]}
    if compiled:
        out |= {"graphs_total": _graphs(), "graphs_compiled_during_timed_steps": _graphs() - graphs_before}
    if flops:
        out["gflop_per_step"] = round(flops / 1e9, 3)
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _graphs() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="vit_large", choices=list(ARCHS))
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--pred-dim", type=int, default=384)
    ap.add_argument("--pred-depth", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--compile", nargs="*", default=["auto", "dynamic"], choices=["auto", "dynamic"],
                    help="compiled arms after the eager one (none: eager only)")
    ap.add_argument("--quick", action="store_true", help="CPU smoke: vit_tiny at 32 px, batch 2, 2 steps")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.arch, args.img, args.patch, args.batch, args.steps, args.warmup = "vit_tiny", 32, 8, 2, 2, 1
        args.pred_dim, args.pred_depth = 96, 2
    result = {"model": f"I-JEPA {args.arch}/{args.patch} at {args.img} px, predictor {args.pred_dim} x "
                       f"{args.pred_depth}", "batch": args.batch, "precision": "bf16 autocast",
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "peak_tflops": args.peak_tflops, "arms": []}
    for mode in [None, *args.compile]:
        try:
            arm = run(args, mode)
        except Exception as err:  # noqa: BLE001 - a compiler failure is a result (recorded), not the end of the run
            arm = {"compiled": mode, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
        gflops = result["arms"][0].get("gflop_per_step") if result["arms"] else arm.get("gflop_per_step")
        if gflops and "step_seconds" in arm:
            arm["tflops"] = round(gflops / 1e3 / arm["step_seconds"], 2)
            arm["mfu_percent"] = round(100 * arm["tflops"] / args.peak_tflops, 1)
            arm["speedup_vs_eager"] = round(result["arms"][0]["step_seconds"] / arm["step_seconds"], 3) if mode else 1.0
        result["arms"].append(arm)
        text = json.dumps(result, indent=1)
        if args.out:  # after every arm: a run stopped later keeps what it measured
            args.out.write_text(text + "\n")
        print(json.dumps(arm), file=sys.stderr, flush=True)  # progress; stdout carries the one JSON object
    print(text)


if __name__ == "__main__":
    main()
