"""seq-JEPA side by side with the official code (hafezgh/seq-jepa), imported at run time: is our small action gain
on the rotations (benchmarks/fidelity/seq_jepa.py) a bug of ours, or what the method does at this size?

    python benchmarks/fidelity/seq_jepa_parity.py --official /path/to/seq-jepa [--seeds 0 1 2] [--jobs 2]
    SEQJEPA_OFFICIAL=/path/to/seq-jepa python benchmarks/fidelity/seq_jepa_parity.py --quick    # smoke (~1 min)

Nothing of the official code lives in this repository (``load_official`` imports the checkout's
seq-jepa/src/models.py; benchmarks/fidelity/official.sh clones it).

1. Equivalence. The official ``SeqJEPA_Transforms`` (its 3DIEBench path: relative actions given as
   ``rel_latents``) and our ``SeqJEPA`` with ``agg_norm="post"`` (torch's post-norm encoder layers + a final
   LayerNorm, as the official ``TransformerEncoder_``), given the same weights (``official_to_ours`` maps the
   names) and the same batch, in eval mode (BatchNorm on running statistics, dropout off): the same loss (fp32,
   1e-5) and the same gradients. The official model's backbone is torchvision's ResNet-18; both sides here get
   our recipe's small ResNet instead (``Backbone``: the official code reads its width from ``fc.in_features``).
   In train mode the two differ by design in one place, measured: the official code embeds the K observed
   views' actions with the last one present and zeroes its embedding after the BatchNorm, so that BatchNorm's
   batch statistics include the action to the predicted view; ours embeds the K - 1 visible ones.
2. Training. Per seed, the official model is built at our rotations recipe's sizes (recipes/seq_jepa/
   rotations_tiny.yaml at the benchmark's +-30 degrees: the small ResNet of the seed's init, action embedding 32,
   aggregator 3 layers / 4 heads / dropout 0.1 (torch's default, the official value), predictor hidden 128) with
   the official initialisation of everything past the backbone, and trained as its main_transformed_views.py +
   engine.train_one_epoch_3diebench do: **Adam, no weight decay** (the official training optimizer is
   ``torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=0.0)``; its ``--optimizer AdamW`` and
   ``--weight-decay`` flags reach only the probe stage), the learning rate set per epoch: linear warmup from
   ``initial_lr`` then constant (its ``CosineAnnealingLR`` steps are overwritten by the warmup branch at the start
   of every epoch, so the cosine never takes effect), the EMA target updated every step with a momentum set per
   epoch (1 - (1 - m0)(cos(pi e / E) + 1) / 2), the target ResNet in train mode (batch statistics). Values from
   our recipe: lr 5e-4, initial lr 1e-5 (its final_lr), warmup 10 % of the epochs, m0 0.996, batch 64, the same
   epochs; the same DataModule batches. The official online probes (detached, their own parameters) are left
   out: they do not touch the encoder.
3. The same evaluation as ours: the trained official weights are loaded into our module (agg_norm="post") and
   scored by jepa_lightning.eval.equivariance.evaluate exactly as seq_jepa.py scores ours: R^2 of the relative
   rotation from pairs of encoder outputs, linear accuracy on the aggregate of L views and on single views.

Arms: "pretrained" / "no_actions" / "random_init" are the OFFICIAL code's here (with / without action conditioning,
and the with-actions model at its init); "ours" / "ours_no_actions" / "ours_random_init" come from seq_jepa.py's
cache of the same seeds (computed when missing). Claims: the official code's R^2 with actions beats without (paired
by seed, the paper's headline gap: 0.71 vs 0.29 on 3DIEBench), and ours and the official code agree (|mean
difference| within 2 x the combined std) on R^2 with and without actions and on the aggregate's accuracy.
Writes benchmarks/results/seq_jepa_parity.json (--quick: runs/bench_seq_jepa/seq_jepa_parity_quick.json).

Measured (5 seeds, 2026-12-06; an official run takes ~6 min, 10 runs ~36 min with 2 jobs; our runs from
seq_jepa.py's cache): the equivalence holds bit for bit in eval mode (loss and the gradients of 39 tensors; train
mode differs by 3e-4 through the action BatchNorm). The official code's R^2 with / without actions 0.317 / 0.288,
gain +0.029 (+0.017 +0.015 +0.032 +0.054 +0.028; paired bar 0.031): its action gain is as small as ours (0.276 /
0.262, +0.014) and fails the same bar; ours and the official code agree on R^2 with and without actions, on the
gain and on the aggregate's accuracy (78.4 vs ours 74.5 %). The official arms sit a little higher everywhere (one
view's encoder output 74.5 vs 67.4 %); both start from the same encoder init (random-init encoder rows equal).
So the small gain is not a bug of ours that the official code avoids: at this size (32 px, +-30 degrees, 620
steps of batch 64) the paper's 0.71 vs 0.29 does not appear with its own code either. The official teacher keeps
~0.27 of its initialisation after the 620 steps (its per-epoch cosine from 0.996; ours starts as the students'
average: 0); the probes read the online encoder in both.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from unittest import mock

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import seq_jepa  # noqa: E402
from common import (  # noqa: E402
    agreement_claim,
    build_recipe,
    cached,
    claim_entry,
    in_parallel,
    paired_gain_claim,
    probe_entry,
    run_worker,
    save_result,
)
from official import import_official, required_checkout  # noqa: E402

REPO, COMMIT = "hafezgh/seq-jepa", "73e0550601725de59d2205c5bb192c7f86b04018"
SETTING = "rotations"
CACHE = seq_jepa.CACHE / "parity"
# our module in the official aggregator's form, so that official weights load into it for the same evaluation
POST = ["--model.init_args.agg_norm=post", "--model.init_args.agg_dropout=0.1"]
# official state-dict prefix -> ours
PREFIXES = {"encoder.net.": "encoder.", "target_encoder.net.": "teacher.module.",
            "transformer_encoder.transformer_encoder.layers.": "aggregator.0.layers.",
            "transformer_encoder.norm.": "aggregator.1.", "predictor.": "predictor.", "action_proj.": "action_embed.",
            "agg_token": "agg_token"}
EVAL_LENS = [1, 2, 3, 4, 5]
# published arm -> (side, arm in that side's runs)
ARMS = {"pretrained": ("official", "with_actions"), "no_actions": ("official", "no_actions"),
        "random_init": ("official", "random_init"), "ours": ("ours", "with_actions"),
        "ours_no_actions": ("ours", "no_actions"), "ours_random_init": ("ours", "random_init")}


def load_official(path: str) -> ModuleType:
    """The official seq-jepa/src/models.py from a checkout (its `utils` import set aside afterwards)."""
    src = Path(path).expanduser().resolve() / "seq-jepa" / "src"
    if not (src / "models.py").is_file():
        raise FileNotFoundError(f"'{Path(path).resolve()}' is not a checkout of {REPO} (no seq-jepa/src/models.py)")
    saved = {k: sys.modules.pop(k) for k in ("utils", "models") if k in sys.modules}
    try:
        return import_official(src, REPO, ["utils", "models"], marker="models.py")["models"]
    finally:
        for k in ("utils", "models"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


class Backbone(nn.Module):
    """Stands in for torchvision's resnet18 in the official model: our recipe's encoder, with the `fc` whose
    `in_features` the official code reads as the width (and then replaces with an Identity)."""

    def __init__(self, net: nn.Module, dim: int) -> None:
        super().__init__()
        self.net, self.fc = net, nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_official(models: ModuleType, ours, image_size: int, num_classes: int, momentum: float) -> nn.Module:
    """The official SeqJEPA_Transforms at our module's sizes, its backbone a copy of our encoder (its init),
    everything else initialised by the official code."""
    backbone = Backbone(copy.deepcopy(ours.encoder), ours.dim)
    predictor_hidden = ours.predictor[0].out_features
    with mock.patch.object(models.torchvision.models, "resnet18", lambda *a, **k: backbone):
        return models.SeqJEPA_Transforms(
            image_size, True, momentum, n_channels=3, num_classes=num_classes, num_heads=agg_heads(ours),
            num_enc_layers=len(ours.aggregator[0].layers), learn_act_emb=True, act_cond=ours.use_actions,
            cifar_resnet=False, act_latentdim=ours.action_dim, act_projdim=ours.token_dim - ours.dim or 1,
            pred_hidden=predictor_hidden)


def agg_heads(ours) -> int:
    return ours.aggregator[0].layers[0].self_attn.num_heads


def official_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official model's state dict under our SeqJEPA's names (its online probes and `fc` left out)."""
    out = {}
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            out[PREFIXES[prefix] + key[len(prefix):]] = value
    return out


def load_into_ours(ours, official: nn.Module) -> None:
    """Our module takes the official weights; every learned tensor of ours must be covered."""
    mapped = official_to_ours(official.state_dict())
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    if unexpected or missing:
        raise KeyError(f"official -> ours: missing {missing}, unexpected {unexpected}")


def no_dropout(network: nn.Module) -> None:
    """Dropout off everywhere in `network`, attention weights included (nn.MultiheadAttention's own `dropout`)."""
    for m in network.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0


def official_loss(official: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The official forward on one of our batches (views [B, M, ...], rel_actions [B, M - 1, A]): its 3DIEBench
    call, the relative actions as `rel_latents` (absolute action latents unused on that path)."""
    views, rel = batch["views"], batch["rel_actions"]
    absolute = torch.zeros(views.shape[0], views.shape[1], rel.shape[-1])
    return official(views[:, :-1], views[:, -1], absolute[:, :-1], absolute[:, -1], rel_latents=rel.float())[0]


def equivalence(models: ModuleType, seed: int = 0, quick: bool = True, use_actions: bool = True) -> dict:
    """Ours and the official model with OUR weights on one batch: loss and gradient differences, eval mode; and
    the loss difference in train mode (dropout off), which the actions' BatchNorm batch makes differ."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(seq_jepa.RECIPES[SETTING], seed, [
            *seq_jepa.SETTING_OVERRIDES[SETTING], *(seq_jepa.QUICK if quick else []),
            "--model.init_args.agg_norm=post", "--model.init_args.agg_dropout=0.0",
            f"--model.init_args.use_actions={str(use_actions).lower()}"], tmp)
    ours, dm = cli.model, cli.datamodule
    dm.setup("fit")
    batch = dm.on_before_batch_transfer(next(iter(dm.train_dataloader())), 0)
    official = build_official(models, ours, batch["views"].shape[-1], dm.num_classes, 0.996)
    theirs = official_to_ours(official.state_dict())
    mine = ours.state_dict()
    back = {o: mine[PREFIXES[p] + o[len(p):]] for o in official.state_dict()
            for p in [next((q for q in PREFIXES if o.startswith(q)), None)] if p is not None}
    official.load_state_dict(back, strict=False)
    if set(theirs) - set(mine):
        raise KeyError(f"official names with no counterpart of ours: {sorted(set(theirs) - set(mine))}")
    out = {}
    for mode in ("eval", "train"):
        for m in (ours, official):
            m.train(mode == "train")
            m.zero_grad()
            no_dropout(m)
        if mode == "train":
            ours.target_norm = "batch"  # the official target ResNet runs in train mode
        a = ours.forward_loss(batch["views"], batch["rel_actions"])[0]
        b = official_loss(official, batch)
        out[f"{mode}_loss"] = [float(a.detach()), float(b.detach())]
        out[f"{mode}_loss_diff"] = abs(out[f"{mode}_loss"][0] - out[f"{mode}_loss"][1])
        if mode == "eval":
            a.backward()
            b.backward()
            g_ours = {n: p.grad for n, p in ours.named_parameters() if p.grad is not None}
            g_off = official_to_ours({n: p.grad for n, p in official.named_parameters() if p.grad is not None})
            common = sorted(set(g_ours) & set(g_off))
            scale = max(float(g.abs().max()) for g in g_ours.values())
            out["grad_tensors"] = len(common)
            out["grad_missing"] = sorted(set(g_ours) ^ set(g_off))
            out["max_grad_diff"] = max(float((g_ours[n] - g_off[n]).abs().max()) for n in common)
            out["max_grad"] = scale
    return out


# ----------------------------------------------------------------------------------------- training
def official_schedules(epochs: int, lr: float, initial_lr: float, warmup: int, momentum: float
                       ) -> tuple[list[float], list[float]]:
    """Per epoch, the official training's learning rate (linear warmup from `initial_lr`, then constant: the
    warmup branch of main_transformed_views.py resets it to --lr at the start of every later epoch, after any
    CosineAnnealingLR step) and EMA momentum (engine.py: 1 - (1 - m0)(cos(pi e / E) + 1) / 2, set after each
    step; the first epoch's steps use m0)."""
    lrs = [initial_lr + (lr - initial_lr) * e / warmup if e < warmup else lr for e in range(epochs)]
    moms = [1 - (1 - momentum) * (math.cos(math.pi * e / epochs) + 1) / 2 for e in range(epochs)]
    return lrs, moms


def run(seed: int, use_actions: bool, official_path: str, epochs: int | None, quick: bool) -> dict:
    """Train the official model at our recipe's sizes on our batches; score it (and, with actions, its init) with
    our evaluation."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    models = load_official(official_path)
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(seq_jepa.RECIPES[SETTING], seed, [
            *seq_jepa.SETTING_OVERRIDES[SETTING], *(seq_jepa.QUICK if quick else []), *POST,
            *([f"--trainer.max_epochs={epochs}"] if epochs else []),
            f"--model.init_args.use_actions={str(use_actions).lower()}",
            f"--data.init_args.val_seq_len={max(EVAL_LENS)}"], tmp)
    ours, dm, trainer = cli.model, cli.datamodule, cli.trainer
    dm.setup("fit")
    loader = dm.train_dataloader()
    total = trainer.max_epochs
    official = build_official(models, ours, dm.image_size, dm.num_classes, ours.ema[0])
    lrs, moms = official_schedules(total, ours.lr, ours.final_lr, max(1, round(ours.warmup * total)), ours.ema[0])
    optimizer = torch.optim.Adam(official.parameters(), lr=0.001, weight_decay=0.0)  # the official training's
    limit = trainer.limit_train_batches if isinstance(trainer.limit_train_batches, int) else None
    lengths = [len(loader)] if limit is None else [min(limit, len(loader))]
    eval_lens = [1, 3] if quick else EVAL_LENS
    regression_steps = 100 if quick else 1500

    def score(network: nn.Module) -> dict[str, float]:
        load_into_ours(ours, network)
        return seq_jepa.evaluate(ours, dm.train_eval_dataloader(), dm.val_dataloader(), eval_lens, dm,
                                 regression_steps, seed, encoder_views=True)

    out = {"seed": seed, "use_actions": use_actions, "epochs": total,
           "random_init": score(official) if use_actions else None}
    losses, steps, t0 = [], 0, time.perf_counter()
    for epoch in range(total):
        for group in optimizer.param_groups:
            group["lr"] = lrs[epoch]
        official.train()
        for i, batch in enumerate(loader):
            if i == lengths[0]:
                break
            batch = dm.on_before_batch_transfer(batch, 0)
            if batch is None:
                continue
            optimizer.zero_grad()
            loss = official_loss(official, batch)
            loss.backward()
            optimizer.step()
            official.update_moving_average()
            official.ema_decay = moms[epoch]
            losses.append(float(loss.detach()))
            steps += 1
    out.update(steps=steps, train_seconds=round(time.perf_counter() - t0, 1),
               loss_first_last=[round(statistics.mean(losses[:10]), 4), round(statistics.mean(losses[-10:]), 4)],
               trained=score(official))
    return out | {"seconds": round(time.perf_counter() - start, 1)}


# ----------------------------------------------------------------------------------------- results
def cache_path(seed: int, use_actions: bool, epochs: int | None, quick: bool) -> Path:
    arm = "with_actions" if use_actions else "no_actions"
    return CACHE / f"{SETTING}_s{seed}_{arm}{f'_{epochs}ep' if epochs else ''}{'_quick' if quick else ''}.json"


def ours(seed: int, use_actions: bool, epochs: int | None, quick: bool) -> dict:
    """Our run of (seed, arm): seq_jepa.py's cache (run now when absent), at the same epochs."""
    args = argparse.Namespace(setting=SETTING, epochs=1 if quick else epochs, eval_lens=[1, 3] if quick else EVAL_LENS,
                              regression_steps=100 if quick else 1500, quick=quick, overrides=[], fresh=False)
    return seq_jepa.run_cached(seed, "with_actions" if use_actions else "no_actions", args)


def pair(seed: int, use_actions: bool, args: argparse.Namespace) -> dict:
    mine = ours(seed, use_actions, args.epochs, args.quick)
    theirs = run_worker(cache_path(seed, use_actions, args.epochs, args.quick), __file__, [
        "--one", str(seed), "1" if use_actions else "0", "--official", args.official,
        *(["--epochs", str(args.epochs)] if args.epochs else []), *(["--quick"] if args.quick else [])],
        f"official seq-JEPA seed {seed} {'with' if use_actions else 'without'} actions", args.fresh)
    return {"seed": seed, "use_actions": use_actions, "ours": mine, "official": theirs}


def entries(pairs: list[dict], train_len: int) -> tuple[list[dict], list[dict]]:
    seeds = sorted({p["seed"] for p in pairs})
    by = {(p["seed"], p["use_actions"]): p for p in pairs}

    def scores(arm: str, key: str, scale: float) -> list[float]:
        side, which = ARMS[arm]
        flag = which != "no_actions"
        got = [by[(s, flag)][side] for s in seeds]
        return [scale * g["random_init" if which == "random_init" else "trained"][key] for g in got]

    spec = {"equivariance_r2": ("equivariance_r2", "R^2", 1.0),
            f"aggregate_linear_{train_len}": (f"agg_linear_acc_{train_len}", "accuracy %", 100.0),
            "encoder_linear_1": ("encoder_linear_acc_1", "accuracy %", 100.0)}
    probes = [probe_entry(name, metric, {arm: scores(arm, key, scale) for arm in ARMS})
              for name, (key, metric, scale) in spec.items()]
    r2 = {arm: scores(arm, "equivariance_r2", 1.0) for arm in ARMS}
    claims = [paired_gain_claim("the official code: R^2 of the relative rotation with action conditioning beats R^2 "
                                "without, seed by seed (paper, 3DIEBench: 0.71 vs 0.29)", r2["pretrained"],
                                r2["no_actions"])]

    def agree(what: str, mine: list[float], theirs: list[float]) -> dict:
        return agreement_claim(f"ours and the official code agree: {what} (ours minus official)", mine, theirs)

    gains = {side: [a - b for a, b in zip(r2[w], r2[wo])]
             for side, w, wo in (("ours", "ours", "ours_no_actions"), ("official", "pretrained", "no_actions"))}
    acc = f"agg_linear_acc_{train_len}"
    claims += [agree("R^2 with actions", r2["ours"], r2["pretrained"]),
               agree("R^2 without actions", r2["ours_no_actions"], r2["no_actions"]),
               agree("the R^2 gain from actions", gains["ours"], gains["official"]),
               agree(f"linear accuracy on the aggregate of {train_len} views, with actions (points)",
                     scores("ours", acc, 100.0), scores("pretrained", acc, 100.0))]
    return probes, claims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default=None, help="checkout of hafezgh/seq-jepa (default: env SEQJEPA_OFFICIAL)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: seed 0, one epoch of 4 batches, tiny network")
    ap.add_argument("--fresh", action="store_true", help="recompute cached official runs")
    ap.add_argument("--one", nargs=2, metavar=("SEED", "ACTIONS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.official = required_checkout(ap, args.official, "SEQJEPA_OFFICIAL", REPO)
    if args.quick:
        args.seeds, args.epochs = args.seeds[:1], 1
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.one:  # a worker process: one official run, cached
        seed, actions = int(args.one[0]), args.one[1] == "1"
        cached(cache_path(seed, actions, args.epochs, args.quick), run, seed, actions, args.official, args.epochs,
               args.quick, fresh=True)
        return
    t0 = time.perf_counter()
    check = equivalence(load_official(args.official), 0, quick=args.quick)
    pairs = in_parallel(lambda seed, actions: pair(seed, actions, args), [
        (s, a) for s in args.seeds for a in (True, False)], args.jobs)
    probes, claims = entries(pairs, 3)
    scale = check["max_grad"]
    claims.insert(0, claim_entry(
        "eval mode, the same weights and batch: loss and gradients equal to the official code's",
        max(check["eval_loss_diff"], check["max_grad_diff"] / scale),
        f"|loss diff| <= 1e-05 and max grad diff <= 1e-05 x max |grad| (fp32; {check['grad_tensors']} tensors)",
        bool(check["eval_loss_diff"] <= 1e-5 and check["max_grad_diff"] <= 1e-5 * scale and not check["grad_missing"])))
    claims.insert(1, claim_entry(
        "train mode (dropout off): loss difference from the official code, by design (its action BatchNorm's batch "
        "includes the action to the predicted view)", check["train_loss_diff"], "recorded, not judged", None))
    first = next(p["official"] for p in pairs)
    seconds = max(time.perf_counter() - t0, sum(p["official"]["seconds"] for p in pairs) / args.jobs)
    config = {"official": f"{REPO} at {COMMIT}", "setting": SETTING, "epochs": first["epochs"],
              "steps": sorted({p["official"]["steps"] for p in pairs}), "quick": args.quick,
              "official_training": "Adam (weight decay 0), lr per epoch: warmup from the recipe's final_lr to its lr "
                                   "over 10 % of the epochs, then constant; EMA momentum per epoch, cosine from 0.996; "
                                   "target ResNet in train mode; aggregator dropout 0.1",
              "equivalence": check, "official_loss_first_last": {
                  f"seed {p['seed']} {'with' if p['use_actions'] else 'without'} actions":
                  p["official"]["loss_first_last"] for p in pairs},
              "official_seconds": [p["official"]["seconds"] for p in pairs]}
    setting = (f"the official seq-JEPA code (arms pretrained / no actions / random init) and ours side by side on "
               f"{seq_jepa.DESCRIPTIONS[SETTING]}; both at the rotations recipe's size, {first['epochs']} epochs")
    notes = ("Arms pretrained / no_actions / random_init are the OFFICIAL code's (hafezgh/seq-jepa's "
             "SeqJEPA_Transforms and its training loop, on our small ResNet and batches); ours / ours_no_actions / "
             "ours_random_init are benchmarks/fidelity/seq_jepa.py's runs of the same seeds. All are scored by the "
             "same evaluation (jepa_lightning.eval.equivariance), the official weights loaded into our module.")
    path = save_result("seq_jepa_parity" + ("_quick" if args.quick else ""), "seq-JEPA",
                       "benchmarks/fidelity/seq_jepa_parity.py", setting, config, args.seeds, seconds, probes,
                       claims, notes=notes, directory=seq_jepa.CACHE if args.quick else None)
    print(json.dumps(json.loads(path.read_text()), indent=1))


if __name__ == "__main__":
    main()
