"""Training memory: what activation checkpointing and `torch.compile` buy, and what the paper recipes need per GPU.

    python benchmarks/memory.py --out benchmarks/memory.json     # both parts (~10 min on 2 cores)
    python benchmarks/memory.py --quick                          # smoke: tiny sizes, one paper recipe

Part 1, measured on this machine's CPU (`cpu`): one I-JEPA training step (fresh multi-block masks, teacher forward,
student and predictor forward and backward, AdamW, EMA; `paper_step.build`, fp32) at a reduced width (ViT-S/16 at
224 px by default), with and without `checkpoint_blocks: all` on encoder and predictor, eager and compiled
(`nn.compile_blocks`, what `compile: true` does, Inductor). Memory is the peak of live tensor bytes during the step
(`LiveTensorMemory`: every tensor storage an op creates, counted until it is freed), above the weights, gradients
and optimizer state that exist before it; step time is the median over timed steps. For the compiled arms, the
number of graphs Dynamo compiled in total and during the timed steps (the masks' token counts change every step:
a graph per step would mean a recompile every step).

Part 2, on the meta device (`paper`): the paper recipes (I-JEPA ViT-H/14, V-JEPA ViT-L/16, V-JEPA 2 ViT-g/16) built
from their YAML without allocating anything; per GPU at the recipe's per-GPU batch, for FSDP2 world sizes N:
  states   = trainable parameters x (4 fp32 weights + 4 fp32 gradients + 8 AdamW moments) / N + teacher x 4 / N
  gathered = two blocks' bf16 weights (FSDP2 all-gathers one block ahead) unless N = 1 (DDP: every weight whole)
  activations = the peak of live tensor bytes during the step's forward and backward on the meta device, with the
             model in bf16 and each gradient dropped once accumulated (FSDP2 reduce-scatters it to an fp32 shard,
             counted in states), with and without checkpointing every block.
Under bf16-mixed autocast a few tensors stay fp32 (LayerNorm outputs, the loss), so a real run holds somewhat more
activation memory than this count; the CUDA allocator's caching and NCCL buffers come on top (a few GiB).
Prints one JSON object (`--out` also writes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from paper_step import ARCHS, build  # noqa: E402

from jepa_lightning.nn import TransformerStack  # noqa: E402
from jepa_lightning.nn.transformer import compile_blocks  # noqa: E402
from jepa_lightning.targets import ema_update  # noqa: E402

GIB = 2**30
PAPER_RECIPES = ["recipes/ijepa/in1k_vith14.yaml", "recipes/vjepa/k400_vitl16.yaml", "recipes/vjepa2/vitg16_256px.yaml"]


class LiveTensorMemory(TorchDispatchMode):
    """Counts the bytes of every tensor storage created by an op while active, until the storage is freed; `peak`
    is the most alive at once. Works on any device, the meta device included (nothing is allocated there)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t.untyped_storage())
        return out

    def _add(self, storage) -> None:
        key = storage._cdata
        if key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.now += self.live[key]
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)


def stacks(model: torch.nn.Module) -> list[TransformerStack]:
    return [m for m in model.modules() if isinstance(m, TransformerStack)]


def set_checkpointing(model: torch.nn.Module, on: bool) -> None:
    for stack in stacks(model):
        stack.checkpoint_blocks = len(stack.blocks) if on else 0


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# ----------------------------------------------------------------------------------------------- part 1: CPU
def cpu_arm(args: argparse.Namespace, checkpoint: bool, compiled: bool) -> dict:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = build(args.arch, args.img, args.patch, args.pred_dim, args.pred_depth).train()
    set_checkpointing(model, checkpoint)
    student = [p for m in (model.encoder, model.predictor) for p in m.parameters()]
    opt = torch.optim.AdamW(student, lr=1e-4, weight_decay=0.04, fused=True)
    if compiled:
        for net in (model.encoder, model.predictor, model.teacher.module):
            compile_blocks(net)
    x = torch.randn(args.batch, 3, args.img, args.img)
    g = torch.Generator().manual_seed(0)
    sizes = []

    def step() -> None:
        m = model.masks(args.batch, model.encoder.grid_size, generator=g)
        sizes.append(int(m.context.shape[1]))
        model.forward_loss(x, m)[0].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(model.teacher.module, model.encoder, 0.996)

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        step()
    graphs_before = graphs()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    out = {"checkpoint_blocks": "all" if checkpoint else 0, "compile": compiled,
           "first_step_seconds": round(first, 2), "step_seconds": round(statistics.median(times), 3),
           "context_tokens_seen": sorted(set(sizes))}
    if compiled:
        out |= {"graphs_total": graphs(), "graphs_compiled_during_timed_steps": graphs() - graphs_before}
    else:  # memory on the eager model (a dispatch mode does not mix with compiled graphs)
        with LiveTensorMemory() as mem:
            step()
        states = tensor_bytes(p for p in model.parameters()) + tensor_bytes(
            t for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
        out |= {"step_peak_mib": round(mem.peak / 2**20, 1), "weights_and_optimizer_mib": round(states / 2**20, 1)}
    return out


def graphs() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def cpu_part(args: argparse.Namespace) -> dict:
    arms = [cpu_arm(args, ckpt, False) for ckpt in (False, True)]
    if not args.no_compile:
        for ckpt in (False, True):
            try:
                arms.append(cpu_arm(args, ckpt, True))
            except Exception as err:  # noqa: BLE001 - a compiler failure is a result (recorded), not the end
                arms.append({"checkpoint_blocks": "all" if ckpt else 0, "compile": True,
                             "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"})
    eager, ckpt = arms[0], arms[1]
    return {"model": f"I-JEPA {args.arch} ({ARCHS[args.arch]}: width, depth, heads), patch {args.patch}, "
                     f"{args.img} px, predictor {args.pred_dim} x {args.pred_depth}, batch {args.batch}, fp32",
            "threads": torch.get_num_threads(), "arms": arms,
            "checkpointing_memory_ratio": round(ckpt["step_peak_mib"] / eager["step_peak_mib"], 3),
            "checkpointing_time_ratio": round(ckpt["step_seconds"] / eager["step_seconds"], 3)}


# ------------------------------------------------------------------------------------- part 2: paper recipes
def recipe_model(recipe: str, tmp: Path):
    """(model on the meta device, per-GPU batch, input key, input shape of one sample) from a recipe."""
    from jepa_lightning.cli import JEPACLI

    source = tmp / "list.txt"  # the recipes' data live on a cluster: a stand-in the data modules accept
    source.write_text("/nonexistent/video.mp4 0\n")
    for split in ("train", "val"):
        (tmp / "images" / split / "c").mkdir(parents=True, exist_ok=True)
    data = {"VideoDataModule": f"--data.init_args.train={source}",
            "ImageFolderDataModule": f"--data.init_args.root={tmp / 'images'}"}
    text = (ROOT / recipe).read_text()
    extra = [v for k, v in data.items() if k in text]
    with torch.device("meta"):
        cli = JEPACLI(args=["--config", str(ROOT / recipe), "--trainer.accelerator=cpu", "--trainer.devices=1",
                            "--trainer.num_nodes=1", "--trainer.strategy=auto", f"--run_dir={tmp / 'run'}", *extra],
                      run=False)
    enc = cli.model.encoder
    frames = getattr(enc.patch_embed, "num_frames", 1)
    shape = (3, frames, *enc.patch_embed.img_size) if frames > 1 else (3, *enc.patch_embed.img_size)
    return cli.model, cli.datamodule.hparams.batch_size, cli.model.input_key, shape, cli.trainer


def to_meta(obj):
    """Tensors inside lists, tuples, dicts and (frozen) dataclasses such as `Masks`, moved to the meta device."""
    if torch.is_tensor(obj):
        return obj.to("meta")
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **{f.name: to_meta(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_meta(v) for v in obj)
    if isinstance(obj, dict):
        return {k: to_meta(v) for k, v in obj.items()}
    return obj


def activation_peak(model, batch_size: int, key: str, shape: tuple[int, ...], checkpoint: bool) -> int:
    set_checkpointing(model, checkpoint)
    cpu_batch = {key: torch.zeros(()).expand(batch_size, *shape)}  # only shapes: no memory
    masks = model.sample_masks(cpu_batch, torch.Generator().manual_seed(0))
    batch = {key: torch.empty(batch_size, *shape, device="meta", dtype=torch.bfloat16),
             "masks": to_meta(masks)}
    with LiveTensorMemory() as mem:
        loss = model.objective(batch)[0]
        loss.backward()
    return mem.peak


def paper_part(recipes: list[str], world_sizes: list[int]) -> list[dict]:
    rows = []
    for recipe in recipes:
        with tempfile.TemporaryDirectory() as tmp:
            model, batch_size, key, shape, _ = recipe_model(recipe, Path(tmp))
        trainable = sum(p.numel() for m in model.trainable_modules() for p in m.parameters() if p.requires_grad)
        teacher = sum(p.numel() for p in model.teacher.module.parameters()) if model.teacher is not None else 0
        blocks = [b for s in stacks(model.encoder) for b in s.blocks]
        block_bf16 = 2 * max(sum(p.numel() for p in b.parameters()) for b in blocks)
        recipe_ckpt = any(s.checkpoint_blocks for s in stacks(model))
        model = model.to(torch.bfloat16).train()
        for p in model.parameters():
            if p.requires_grad:  # FSDP2 reduce-scatters each gradient into the fp32 shard (counted in states)
                p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
        act = {ckpt: activation_peak(model, batch_size, key, shape, ckpt) for ckpt in (False, True)}
        per_gpu = []
        for n in world_sizes:
            states = (trainable * 16 + teacher * 4) / n
            gathered = 0 if n == 1 else 2 * block_bf16
            per_gpu.append({"world_size": n, "states_gib": round(states / GIB, 2),
                            "total_gib": round((states + gathered + act[False]) / GIB, 1),
                            "total_checkpointed_gib": round((states + gathered + act[True]) / GIB, 1)})
        rows.append({"recipe": recipe, "method": type(model).__name__, "input": [batch_size, *shape],
                     "trainable_params_m": round(trainable / 1e6, 1), "teacher_params_m": round(teacher / 1e6, 1),
                     "recipe_checkpoints_blocks": recipe_ckpt,
                     "activations_gib": round(act[False] / GIB, 2),
                     "activations_checkpointed_gib": round(act[True] / GIB, 2), "per_gpu": per_gpu})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vit_small", choices=sorted(ARCHS))
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--pred-dim", type=int, default=192)
    ap.add_argument("--pred-depth", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="eager arms only")
    ap.add_argument("--recipes", nargs="*", default=PAPER_RECIPES)
    ap.add_argument("--world-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--quick", action="store_true", help="smoke: a tiny model on CPU, eager, one paper recipe")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.arch, args.img, args.patch, args.pred_dim, args.pred_depth = "vit_tiny", 32, 8, 48, 1
        args.batch, args.steps, args.warmup, args.no_compile = 4, 2, 1, True
        args.recipes, args.world_sizes = args.recipes[:1], [1, 8]
    t = time.perf_counter()
    out = {"torch": torch.__version__, "cpu": cpu_part(args), "paper": paper_part(args.recipes, args.world_sizes)}
    out["wall_seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
