"""Differential check of our V-JEPA against the official code (facebookresearch/jepa), imported at run time.

    python benchmarks/fidelity/vjepa_parity.py --official /path/to/jepa
    VJEPA_OFFICIAL=/path/to/jepa python benchmarks/fidelity/vjepa_parity.py

Nothing of the official code lives in this repository (``official.py`` imports the checkout's ``src`` and ``app``
packages; ``official.sh`` clones it at a pinned commit).

1. Equivalence: the official encoder and predictor, built by the official ``app/vjepa/utils.init_video_model``
   at our tiny recipe's size (recipes/vjepa/tiny.yaml: 32 px, 8 frames, patch 4, tubelet 2, 96-d x 4, predictor
   48-d x 2, two mask tokens, the official pretraining config's ``uniform_power``, ``use_mask_tokens``,
   ``zero_init_mask_tokens``), every parameter perturbed off its trivial init, are mapped into our ``VJEPA``. On
   the same clips and the same masks (ours, one context and one target set per generator, converted to the
   official lists) the official loss (``app/vjepa/train.py``: layer-normed target-encoder tokens at the targets,
   mean |z - h| per generator, averaged) and ours (``VJEPA.forward_loss``) are compared, and every mapped
   parameter's gradient. The fixed sin-cos tables are compared too.
2. Masks: the official ``MaskCollator`` (``src/masks/multiblock3d.py``) and our ``MultiBlockMask3D`` with the
   official pretraining config's two generators (8 blocks at spatial scale 0.15, 2 at 0.7, full temporal extent)
   on the tiny grid (4 x 8 x 8) and the paper's (8 x 14 x 14): context and target sizes per generator, with the
   batch truncation.

3. Training side by side (`--seeds`, `--steps`): from the same initial weights (the official init mapped into ours),
   on the same moving-digit clips and masks, one loop trains each implementation with its own optimizer set-up
   (official: ``app/vjepa/utils.init_opt`` with ``ipe_scale`` 1, train.py's EMA; ours: the I-JEPA parity's
   ``OursArm``), then the same digit probe on each teacher.

Runtime: equivalence and masks, seconds; training, about a minute per 10 steps per seed on one thread. Prints one JSON object and writes
benchmarks/results/vjepa_parity.json (schema of ``common.py``: claims only).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import RESULTS, claim_entry, probe_entry, save_result, summary  # noqa: E402
from official import import_official, official_dir  # noqa: E402
from reference_parity import Config as ImageConfig  # noqa: E402
from reference_parity import OfficialArm, OursArm, Train, _perturb, map_official_to_ours, train  # noqa: E402

from jepa_lightning.masks import Masks, MultiBlockMask3D, step_generator  # noqa: E402
from jepa_lightning.methods import VJEPA  # noqa: E402
from jepa_lightning.nn import TransformerPredictor, VisionTransformer  # noqa: E402

ENV = "VJEPA_OFFICIAL"
TOL = 1e-5
GENERATORS = [dict(num_blocks=8, spatial_scale=(0.15, 0.15)), dict(num_blocks=2, spatial_scale=(0.7, 0.7))]


@dataclass(frozen=True)
class Config(ImageConfig):
    """recipes/vjepa/tiny.yaml's networks: the I-JEPA parity's ViT on 8-frame clips in 2-frame tubelets."""
    num_frames: int = 8
    tubelet_size: int = 2

    @property
    def grid(self) -> tuple[int, int, int]:
        s = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet_size, s, s)


def load_official(path: str | os.PathLike) -> SimpleNamespace:
    m = import_official(path, "facebookresearch/jepa",
                        ["src.models.vision_transformer", "src.masks.multiblock3d", "src.masks.utils",
                         "app.vjepa.utils"], marker="app/vjepa/train.py")
    return SimpleNamespace(root=Path(path).expanduser().resolve(), vit=m["src.models.vision_transformer"],
                           multiblock3d=m["src.masks.multiblock3d"], apply_masks=m["src.masks.utils"].apply_masks,
                           utils=m["app.vjepa.utils"])


def build_official(off: SimpleNamespace, cfg: Config) -> tuple[nn.Module, nn.Module]:
    """(encoder, predictor) as the official training builds them (``init_video_model``, multi-mask wrappers)."""
    name = f"_parity_vit_{cfg.embed_dim}_{cfg.depth}_{cfg.num_heads}"
    setattr(off.vit, name, functools.partial(
        off.vit.VisionTransformer, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=4,
        qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6)))
    return off.utils.init_video_model(
        device=torch.device("cpu"), patch_size=cfg.patch_size, num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet_size, model_name=name, crop_size=cfg.img_size, pred_depth=cfg.predictor_depth,
        pred_embed_dim=cfg.predictor_dim, uniform_power=True, use_mask_tokens=True, num_mask_tokens=2,
        zero_init_mask_tokens=True, use_sdpa=True)


def build_ours(cfg: Config) -> VJEPA:
    encoder = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, num_frames=cfg.num_frames,
                                tubelet_size=cfg.tubelet_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                                num_heads=cfg.num_heads)
    predictor = TransformerPredictor(grid_size=cfg.grid, embed_dim=cfg.embed_dim, predictor_dim=cfg.predictor_dim,
                                     depth=cfg.predictor_depth, num_heads=cfg.num_heads, num_mask_tokens=2,
                                     zero_init_mask_tokens=True)
    masks = [MultiBlockMask3D(**g, aspect_ratio=(0.75, 1.5)) for g in GENERATORS]
    return VJEPA(encoder, predictor, masks=masks, ema=(0.998, 1.0))


def official_layout(tensors: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """Official names -> the official I-JEPA layout that `map_official_to_ours` reads: the multi-mask wrapper's
    "backbone." (and DDP's "module.") dropped; the predictor's per-generator mask tokens [1, 1, P] stacked into
    one "mask_token" [n, 1, P]."""
    out = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in tensors.items()}
    if part == "predictor":
        keys = sorted((k for k in out if k.startswith("mask_tokens.")), key=lambda k: int(k.split(".")[1]))
        out["mask_token"] = torch.cat([out.pop(k) for k in keys])
    return out


def official_state(module: nn.Module, part: str) -> dict[str, torch.Tensor]:
    """A wrapped official module's state dict in that layout."""
    return official_layout(module.state_dict(), part)


def load_official_weights(model: VJEPA, encoder: nn.Module, predictor: nn.Module) -> None:
    model.encoder.load_state_dict(map_official_to_ours(official_state(encoder, "encoder"), model.encoder, "encoder"))
    model.teacher.module.load_state_dict(model.encoder.state_dict())
    model.predictor.load_state_dict(
        map_official_to_ours(official_state(predictor, "predictor"), model.predictor, "predictor"))


def official_loss(off: SimpleNamespace, encoder: nn.Module, predictor: nn.Module, target_encoder: nn.Module,
                  clips: torch.Tensor, masks: list[Masks]) -> torch.Tensor:
    """app/vjepa/train.py's forward_target / forward_context / loss_fn (loss_exp 1, no regulariser)."""
    masks_enc, masks_pred = [m.context for m in masks], [m.targets[:, 0] for m in masks]
    with torch.no_grad():
        h = target_encoder(clips)
        h = F.layer_norm(h, (h.size(-1),))
        h = off.apply_masks(h, masks_pred, concat=False)
    z = predictor(encoder(clips, masks_enc), h, masks_enc, masks_pred)
    return sum(torch.mean(torch.abs(zi - hi)) for zi, hi in zip(z, h)) / len(masks_pred)


def equivalence(off: SimpleNamespace, cfg: Config = Config(), seed: int = 0, batch_size: int = 4) -> dict[str, Any]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    encoder, predictor = build_official(off, cfg)
    _perturb(encoder, 0.02, g)
    _perturb(predictor, 0.02, g)
    target = copy.deepcopy(encoder)
    model = build_ours(cfg)
    load_official_weights(model, encoder, predictor)
    tables = {"encoder": (model.encoder.pos_embed, official_state(encoder, "encoder")["pos_embed"]),
              "predictor": (model.predictor.pos_embed, official_state(predictor, "predictor")["predictor_pos_embed"])}
    pos = {k: (a.reshape(-1, a.size(-1)) - b.reshape(-1, b.size(-1))).abs().max().item() for k, (a, b) in tables.items()}
    clips = torch.randn(batch_size, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g)
    mg = torch.Generator().manual_seed(seed + 1)
    masks = [m(batch_size, cfg.grid, generator=mg) for m in model.masks]
    loss_off = official_loss(off, encoder, predictor, target, clips, masks)
    loss_off.backward()
    model.train()
    loss_ours = model.forward_loss(clips, masks)[0]
    loss_ours.backward()
    worst, params = 0.0, 0
    for part, off_module in (("encoder", encoder), ("predictor", predictor)):
        grads = official_layout({k: p.grad for k, p in off_module.named_parameters() if p.grad is not None}, part)
        fixed = ("pos_embed", "predictor_pos_embed")  # frozen tables: no gradient, not mapped
        rest = {k: v for k, v in official_state(off_module, part).items() if k not in grads and k not in fixed}
        mapped = map_official_to_ours(grads | rest, getattr(model, part), part)
        for name, p in getattr(model, part).named_parameters():
            if p.grad is None:
                continue
            ref = mapped[name]
            worst = max(worst, (ref - p.grad).abs().max().item() / max(ref.abs().max().item(), 1e-30))
            params += 1
    return {"loss_official": loss_off.item(), "loss_ours": loss_ours.item(),
            "loss_abs_diff": abs(loss_off.item() - loss_ours.item()), "grad_max_rel_diff": worst,
            "params_compared": params, "pos_embed_max_abs_diff": pos,
            "context_sizes": [int(m.context.shape[1]) for m in masks],
            "target_sizes": [int(m.targets.shape[-1]) for m in masks]}


def compare_masks(off: SimpleNamespace, cfg: Config, batches: int = 200, batch_size: int = 8) -> dict[str, Any]:
    """Mean (and quantiles) of the context and target sizes per generator, with the batch truncation, for the
    official collator and ours at the same config."""
    collator = off.multiblock3d.MaskCollator(
        cfgs_mask=[dict(g, aspect_ratio=(0.75, 1.5), temporal_scale=(1.0, 1.0), max_temporal_keep=1.0,
                        max_keep=None) for g in GENERATORS],
        crop_size=(cfg.img_size, cfg.img_size), num_frames=cfg.num_frames,
        patch_size=cfg.patch_size, tubelet_size=cfg.tubelet_size)
    ours = build_ours(cfg).masks
    g = torch.Generator().manual_seed(0)
    sizes = {impl: [{"context": [], "target": []} for _ in GENERATORS] for impl in ("official", "ours")}
    for _ in range(batches):
        _, enc, pred = collator([torch.zeros(1)] * batch_size)
        for i in range(len(GENERATORS)):
            sizes["official"][i]["context"].append(enc[i].shape[1])
            sizes["official"][i]["target"].append(pred[i].shape[1])
            m = ours[i](batch_size, cfg.grid, generator=g)
            sizes["ours"][i]["context"].append(m.context.shape[1])
            sizes["ours"][i]["target"].append(m.targets.shape[-1])
    n = cfg.grid[0] * cfg.grid[1] * cfg.grid[2]
    return {impl: [{k: {"mean": round(statistics.mean(v), 2), "min": min(v), "max": max(v),
                        "mean_fraction": round(statistics.mean(v) / n, 4),
                        "se_fraction": round(statistics.stdev(v) / n / len(v) ** 0.5, 5)} for k, v in gen.items()}
                   for gen in per]
            for impl, per in sizes.items()} | {"tokens": n, "batches": batches}


# ----------------------------------------------------------------------------------------- training parity
VIDEO_TRAIN = Train(steps=200, batch_size=32, ema=(0.998, 1.0))  # recipes/vjepa/tiny.yaml's optimisation


class OfficialVideoArm(OfficialArm):
    """The official networks, optimizer set-up (app/vjepa/utils.init_opt, ipe_scale 1 so that its schedules end
    with the run as ours do; the pretraining configs stretch them by 1.25) and EMA update (app/vjepa/train.py, the
    same as I-JEPA's: inherited with the schedulers' order)."""

    def __init__(self, off: SimpleNamespace, encoder: nn.Module, predictor: nn.Module, t: Train) -> None:
        self.off, self.encoder, self.predictor, self.t = off, encoder, predictor, t
        self.target = copy.deepcopy(encoder).requires_grad_(False)
        self.opt, _, self.sched, self.wd_sched = off.utils.init_opt(
            encoder=encoder, predictor=predictor, iterations_per_epoch=t.steps, start_lr=t.start_lr, ref_lr=t.lr,
            warmup=t.warmup, num_epochs=1, wd=t.weight_decay, final_wd=t.final_weight_decay, final_lr=t.final_lr,
            ipe_scale=1.0)

    def loss(self, x: torch.Tensor, masks: list[Masks]) -> torch.Tensor:
        return official_loss(self.off, self.encoder, self.predictor, self.target, x, masks)


def moving_digits(seed: int, steps: int, batch_size: int):
    """`steps` training batches of clips (recipes/vjepa/tiny.yaml's data) and the DataModule."""
    from datamodules import MovingDigitsDataModule

    dm = MovingDigitsDataModule(batch_size=batch_size, num_workers=0, seed=seed, pin_memory=False)
    dm.setup("fit")
    batches = []
    while len(batches) < steps:
        for batch in dm.train_dataloader():
            batches.append(dm.on_before_batch_transfer(batch, 0)["video"])
            if len(batches) == steps:
                break
    return batches, dm


@torch.no_grad()
def video_probe(encoder: nn.Module, dm) -> float:
    """Digit accuracy (%) of a logistic regression on mean-pooled, standardised tokens (train_eval -> val)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    encoder.eval()

    def features(loader):
        xs, ys = [], []
        for batch in loader:
            batch = dm.on_before_batch_transfer(batch, 0)
            xs.append(encoder(batch["video"]).mean(1))
            ys.append(batch["digit"])
        return torch.cat(xs).double().numpy(), torch.cat(ys).numpy()

    (ftr, ytr), (fva, yva) = features(dm.train_eval_dataloader()), features(dm.val_dataloader())
    with threadpool_limits(1):
        scaler = StandardScaler().fit(ftr)
        clf = LogisticRegression(max_iter=3000).fit(scaler.transform(ftr), ytr)
        return 100.0 * float((clf.predict(scaler.transform(fva)) == yva).mean())


def train_parity(off: SimpleNamespace, seed: int, cfg: Config = Config(), t: Train = VIDEO_TRAIN) -> dict[str, Any]:
    """One seed: the same initial weights (the official init mapped into ours), clips and masks; each
    implementation trained by the same loop with its own optimizer set-up; the same probe on each teacher."""
    torch.manual_seed(seed)
    encoder, predictor = build_official(off, cfg)
    model = build_ours(cfg)
    load_official_weights(model, encoder, predictor)
    batches, dm = moving_digits(seed, t.steps, t.batch_size)
    random_init = video_probe(copy.deepcopy(model.teacher.module), dm)
    masks = [[m(t.batch_size, cfg.grid, generator=step_generator(seed, 0, i)) for m in model.masks]
             for i in range(t.steps)]
    out: dict[str, Any] = {"seed": seed, "random_init": random_init}
    for name, arm in (("official", OfficialVideoArm(off, encoder, predictor, t)), ("ours", OursArm(model, t))):
        t0 = time.perf_counter()
        losses = train(arm, batches, masks, prepare=lambda x: x)
        out[name] = {"losses": losses, "train_seconds": round(time.perf_counter() - t0, 1),
                     "probe": video_probe(arm.target_encoder(), dm)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default=None, help=f"checkout of facebookresearch/jepa (default: env {ENV})")
    ap.add_argument("--results-dir", default=None, help="where the schema result goes (default benchmarks/results)")
    ap.add_argument("--mask-batches", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                    help="training parity seeds (none: equivalence and masks only)")
    ap.add_argument("--steps", type=int, default=VIDEO_TRAIN.steps, help="training parity steps per seed")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 steps, seed 0, 20 mask batches")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.mask_batches = 4, args.seeds[:1], 20
    path = official_dir(args.official, ENV)
    if path is None:
        ap.error(f"give --official PATH or set {ENV} to a checkout of facebookresearch/jepa")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    off = load_official(path)
    cfg = Config()
    eq = equivalence(off, cfg)
    paper = Config(img_size=224, num_frames=16, patch_size=16)
    masks = {"tiny 4x8x8": compare_masks(off, cfg, args.mask_batches),
             "paper 8x14x14": compare_masks(off, paper, max(args.mask_batches // 4, 10))}
    ctx = {name: [m["ours"][i]["context"]["mean_fraction"] - m["official"][i]["context"]["mean_fraction"]
                  for i in range(len(GENERATORS))] for name, m in masks.items()}
    # in standard errors of the difference of the two means (each mean over its batches)
    z = {name: [abs(ctx[name][i]) / max((m["ours"][i]["context"]["se_fraction"] ** 2
                                         + m["official"][i]["context"]["se_fraction"] ** 2) ** 0.5, 1e-12)
                for i in range(len(GENERATORS))] for name, m in masks.items()}
    worst_ctx = max(abs(d) for v in ctx.values() for d in v)
    worst_z = max(v for zs in z.values() for v in zs)
    claims = [
        claim_entry("loss and gradients equal to the official code", eq["loss_abs_diff"],
                    f"|loss diff| <= {TOL:g} and max grad diff <= {TOL:g} x max |grad| (fp32; measured "
                    f"{eq['grad_max_rel_diff']:.1e} over {eq['params_compared']} tensors)",
                    eq["loss_abs_diff"] <= TOL and eq["grad_max_rel_diff"] <= TOL),
        claim_entry("sin-cos position tables equal to the official ones", max(eq["pos_embed_max_abs_diff"].values()),
                    f"max |difference| <= {TOL:g} (encoder and predictor)",
                    max(eq["pos_embed_max_abs_diff"].values()) <= TOL),
        claim_entry("masks: the same context sizes as the official collator", worst_ctx,
                    "max |ours - official| of the mean context fraction over both generators and grids, within 3 "
                    f"standard errors (worst: {worst_z:.1f}; per grid, short / long range: "
                    f"{json.dumps({k: [round(d, 4) for d in v] for k, v in ctx.items()})})",
                    worst_z <= 3.0),
    ]
    t_train = time.perf_counter()
    t = dataclasses.replace(VIDEO_TRAIN, steps=args.steps)
    runs = [train_parity(off, seed, cfg, t) for seed in args.seeds]
    train_seconds = time.perf_counter() - t_train
    probes, training = [], "Training side by side: not run (no --seeds)."
    if runs:
        arms = {a: [r[a]["probe"] if a != "random_init" else r[a] for r in runs]
                for a in ("random_init", "ours", "official")}
        diff = statistics.mean(arms["ours"]) - statistics.mean(arms["official"])
        spread = (summary(arms["ours"])["std"] ** 2 + summary(arms["official"])["std"] ** 2) ** 0.5
        claims.append(claim_entry("ours and the official code learn the same (within seed spread)", diff,
                                  f"|mean probe difference| <= combined seed std ({spread:.3g})",
                                  bool(abs(diff) <= spread) if len(runs) > 1 else None))
        probes = [probe_entry("digit linear", "accuracy %", {"random_init": arms["random_init"],
                                                             "pretrained": arms["ours"], "official": arms["official"]})]
        training = (f"Training side by side ({len(runs)} seed(s) x {t.steps} steps of batch {t.batch_size}, same "
                    f"initial weights, clips and masks, each with its own optimizer set-up; official schedules with "
                    f"ipe_scale 1): digit probe on the teacher ours {summary(arms['ours'])} vs official "
                    f"{summary(arms['official'])} (random init {summary(arms['random_init'])}); final losses ours "
                    + ", ".join(f"{r['ours']['losses'][-1]:.4f}" for r in runs) + " vs official "
                    + ", ".join(f"{r['official']['losses'][-1]:.4f}" for r in runs)
                    + f"; {train_seconds:.0f} s on one thread.")
    seconds = time.perf_counter() - t0
    notes = (f"Official code: {off.root}. Equivalence at recipes/vjepa/tiny.yaml's size (fp32, batch 4, perturbed "
             f"official weights mapped into ours; official built by app/vjepa/utils.init_video_model with the "
             f"pretraining config's uniform_power, use_mask_tokens, zero_init_mask_tokens, use_sdpa): loss "
             f"{eq['loss_official']:.6f} official vs {eq['loss_ours']:.6f} ours, max grad diff "
             f"{eq['grad_max_rel_diff']:.1e} x max |grad|; position tables differ by at most "
             f"{max(eq['pos_embed_max_abs_diff'].values()):.1e}. Masks (official pretraining generators: 8 blocks at "
             f"spatial scale 0.15 and 2 at 0.7, full temporal extent; batches of 8): "
             + "; ".join(f"{name}: context {m['official'][0]['context']['mean']:.1f} / "
                         f"{m['official'][1]['context']['mean']:.1f} official vs {m['ours'][0]['context']['mean']:.1f}"
                         f" / {m['ours'][1]['context']['mean']:.1f} ours of {m['tokens']} tokens (short / long range)"
                         for name, m in masks.items())
             + ". " + training)
    saved = save_result("vjepa_parity", "V-JEPA", "benchmarks/fidelity/vjepa_parity.py",
                        "official facebookresearch/jepa vs ours: one step's loss and gradients at the tiny recipe's "
                        "size, the mask collators, and training side by side",
                        {"model": asdict(cfg), "train": asdict(t), "official": str(off.root), "quick": args.quick},
                        list(args.seeds) or [0], seconds, probes, claims, None, notes,
                        Path(args.results_dir) if args.results_dir else RESULTS)
    return {"name": "vjepa_parity", "seconds": round(seconds, 1), "saved": str(saved), "claims": claims,
            "equivalence": eq, "masks": masks,
            "training": [{"seed": r["seed"], "random_init": r["random_init"],
                          **{a: {"probe": r[a]["probe"], "train_seconds": r[a]["train_seconds"],
                                 "loss_first": r[a]["losses"][0], "loss_last": r[a]["losses"][-1]}
                             for a in ("ours", "official")}} for r in runs]}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))
