"""UI-JEPA's claims at small scale, on the embedded synthetic UI screen recordings (real mp4 files; by default the
"interact" set, where one app skin serves every intent and colour carries nothing: datamodules/ui/interact.py).

    python benchmarks/fidelity/ui_jepa.py [--seeds 0 1 2 --epochs 40 --decoder-epochs 60 --jobs 2] [-- OVERRIDES]
    python benchmarks/fidelity/ui_jepa.py --quick          # smoke test (~1 min)

Per seed, with the tiny recipes (`recipes/ui_jepa/pretrain_tiny.yaml`, `recipes/ui_jepa/decoder_tiny.yaml`; the
data set by `--synthetic`, extra pretraining overrides after `--`):
- two encoders pretrained on the unlabeled training recordings for the same number of epochs: `spatial_temporal`
  (UI-JEPA's masks: V-JEPA's spatial pair + whole hyper-frames) and `spatial` (the spatial pair only, i.e.
  V-JEPA's masks on UI data); of each, the EMA teacher ("pretrained": the network UI-JEPA evaluates) and, for
  `spatial_temporal`, the context encoder; and the seed's random initialisation (same architecture) as the floor;
- `seen`: new recordings of the common categories (generated with the next generator seed), never seen in
  training by encoder or decoder, of categories they trained on;
- a frozen intent-category probe on each network: multinomial logistic regression on the tokens averaged per
  hyper-frame (so the probe sees the order of the moments), trained on the training split and scored on the
  `seen` recordings and on the few-shot split (categories with only `few_shot_train` training recordings), plus
  4-fold cross-validated scores on the evaluation recordings of the few-shot and zero-shot categories together
  (`held_out_cv`: recordings the encoder never saw, half of them of categories it never saw);
- the same probe on the data alone (the same for every seed): the colour of every frame (its mean RGB), the pixels
  of its middle frame alone and of all its frames (8x8-pixel cell means), so the table shows what the pixels
  give away;
- the intent decoder (frozen encoder -> projection -> small GPT-2 trained here with a locally trained
  tokenizer) on the EMA teachers and the random encoder, trained on the training split's (recording, intent)
  pairs and scored by greedy generation with Intent Similarity (mean of MiniLM cosine, ROUGE-1/2/L) on the
  `seen` recordings and on the few-shot and zero-shot splits;
- latency per recording (encoder + greedy generation, batch 1, median) and parameter counts of the pipeline.

Claims (UI-JEPA, Fu et al. 2024), each by more than twice the combined seed std: (1) spatial + temporal masking
beats spatial-only masking on intent similarity and on the category probe (`seen` recordings); (2) few-shot
intent similarity is above zero-shot; (3) a pretrained encoder beats a random one (intent similarity and the
category probe). Runtime: 3 seeds with two jobs took 63 min of wall time on 2 cores (2026-12-05; per seed two
~10-min pretrainings, ~2 min of probes, three ~6-min decoders), over the issue's 45-min budget. Each seed runs in its own process (`--jobs` at a time, one thread each); encoders, probes and
decoders are cached under --out, in a folder named by the sizes and a digest of the recipes' text and the
overrides (a rerun resumes; a changed recipe trains anew).
Writes benchmarks/results/ui_jepa_<synthetic>.json (the common.py schema) and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from common import cached, gain_claim, probe_entry, save_result, summary
from safetensors.torch import load_file, save_file
from torch import nn

from datamodules.common import collate_skipping
from datamodules.ui import UIRecordingDataset, UIRecordingsDataModule
from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.frozen_heads import fit_linear

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "ui_jepa"
RECIPE_FILES = (RECIPES / "pretrain_tiny.yaml", RECIPES / "decoder_tiny.yaml")
DATA: dict = {}  # UIRecordingsDataModule arguments shared by every run (--cache-dir, sizes)
PRETRAIN: list[str] = []  # extra overrides of the pretraining recipe (after --), for every encoder built from it
SPATIAL_ONLY = ('[{"class_path": "jepa_lightning.masks.MultiBlockMask3D", "init_args": {"num_blocks": 8, '
                '"spatial_scale": [0.15, 0.15], "aspect_ratio": [0.75, 1.5]}}, {"class_path": '
                '"jepa_lightning.masks.MultiBlockMask3D", "init_args": {"num_blocks": 2, "spatial_scale": [0.7, 0.7],'
                ' "aspect_ratio": [0.75, 1.5]}}]')
VARIANTS = {"spatial_temporal": [], "spatial": [f"--model.init_args.masks={SPATIAL_ONLY}",
                                                "--model.init_args.predictor.init_args.num_mask_tokens=2"]}


def data_args() -> list[str]:
    return [f"--data.init_args.{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in DATA.items()]


def cli(recipe: str, workdir: Path, seed: int, epochs: int, *overrides: str) -> JEPACLI:
    return JEPACLI(run=False, args=[
        "--config", str(RECIPES / recipe), f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
        f"--trainer.max_epochs={epochs}", "--trainer.limit_val_batches=0", "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--run_dir={workdir / 'runs'}", f"--checkpoint.dirpath={workdir / 'ckpt'}",
        *data_args(), *overrides])


# ------------------------------------------------------------------------------------------ pretraining
def pretrain(variant: str, seed: int, epochs: int, out: Path) -> dict:
    """Pretrains one encoder (or reuses its saved weights) -> {path (EMA teacher), context_path (context encoder),
    seconds, steps, final loss, the teacher's remaining init share}."""
    path = out / f"encoder_{variant}_s{seed}.safetensors"
    record = out / f"encoder_{variant}_s{seed}.json"
    if path.is_file() and record.is_file():
        return json.loads(record.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        run = cli("pretrain_tiny.yaml", Path(tmp), seed, epochs, f"--model.init_args.mask_seed={seed}",
                  *VARIANTS[variant], *PRETRAIN)
        t0 = time.perf_counter()
        run.trainer.fit(run.model, datamodule=run.datamodule)
        m = run.trainer.callback_metrics
        context = out / f"context_{variant}_s{seed}.safetensors"
        info = {"path": str(path), "context_path": str(context), "seconds": round(time.perf_counter() - t0, 1),
                "steps": run.trainer.global_step, "final_loss": round(float(m["train/loss"]), 4),
                "ema_init_share": float(m.get("train/ema_init_share", float("nan")))}
        for network, where in (("teacher", path), ("encoder", context)):
            weights = run.model.network(network).state_dict()
            save_file({k: v.contiguous() for k, v in weights.items()}, str(where))
    record.write_text(json.dumps(info))
    return info


def random_encoder(seed: int, out: Path) -> dict:
    path = out / f"encoder_random_s{seed}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        run = cli("pretrain_tiny.yaml", Path(tmp), seed, 1, *PRETRAIN)
        save_file({k: v.contiguous() for k, v in run.model.encoder.state_dict().items()}, str(path))
    return {"path": str(path), "seconds": 0.0, "steps": 0}


def build_encoder(path: str) -> nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        encoder = cli("pretrain_tiny.yaml", Path(tmp), 0, 1, *PRETRAIN).model.encoder
    encoder.load_state_dict(load_file(path))
    return encoder.eval()


# --------------------------------------------------------------------------------------- category probe
def batches(dataset, dm: UIRecordingsDataModule, batch_size: int = 16):
    """Every readable recording of a dataset, in order (unreadable ones skipped and reported by the DataModule)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
    for batch in loader:
        batch = dm.on_before_batch_transfer(batch, 0)
        if batch is not None:
            yield batch


def evaluation_sets(dm: UIRecordingsDataModule) -> dict:
    """The few-shot and zero-shot splits, and `seen`: new recordings of the common categories (drawn by another
    generator seed, every split of that set, kept where the category is common here), which the encoders and
    decoders never saw but whose categories they trained on with `train_per_category` recordings each."""
    other = UIRecordingsDataModule(**{k: v for k, v in DATA.items() if k != "num_workers"},
                                   gen_seed=dm.generation["gen_seed"] + 1)
    other.prepare_data()
    other.setup("fit")
    common = set(dm.categories_of("train")) - set(dm.categories_of("few_shot"))
    assert other.category_names == dm.category_names
    samples = [s for split in ("train", "few_shot", "zero_shot") for s in other._samples(split)
               if dm.category_names[s[2]] in common]
    seen = UIRecordingDataset(samples, dm.num_frames, dm.image_size, dm.mean, dm.std, dm.normalize,
                              dm.decode_threads)
    return {"seen": seen, "few_shot": dm._dataset("few_shot"), "zero_shot": dm._dataset("zero_shot")}


@torch.no_grad()
def slot_features(encoder: nn.Module, dm: UIRecordingsDataModule, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens averaged per hyper-frame [n, T' * D] and the category labels of every recording of a dataset."""
    T = encoder.grid_size[0]
    feats, labels = [], []
    for batch in batches(dataset, dm):
        tokens = encoder(batch["video"])                                # [B, T' H' W', D]
        feats.append(tokens.unflatten(1, (T, -1)).mean(2).flatten(1))  # [B, T' D]
        labels.append(batch["category"])
    return torch.cat(feats), torch.cat(labels)


def probe_accuracy(xtr, ytr, xte, yte, num_classes: int) -> float:
    res = fit_linear(xtr, ytr, xte, yte, "classification", num_classes, l2=1e-1)
    return float(res.val)


def cross_validated(x: torch.Tensor, y: torch.Tensor, num_classes: int, folds: int = 4, seed: int = 0) -> float:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    scores = []
    for k in range(folds):
        test = order[k::folds]
        train = order[torch.isin(order, test, invert=True)]
        scores.append(probe_accuracy(x[train], y[train], x[test], y[test], num_classes))
    return statistics.mean(scores)


def category_probe(features: Callable, dm: UIRecordingsDataModule, sets: dict) -> dict[str, float]:
    """The category probe on ``features(dataset) -> (x [n, F], labels [n])`` of every split."""
    n = dm.num_classes
    xtr, ytr = features(dm._dataset("train"))
    (xse, yse), (xfs, yfs), (xzs, yzs) = (features(sets[k]) for k in ("seen", "few_shot", "zero_shot"))
    return {"seen": round(probe_accuracy(xtr, ytr, xse, yse, n), 4),
            "few_shot": round(probe_accuracy(xtr, ytr, xfs, yfs, n), 4),
            "held_out_cv": round(cross_validated(torch.cat([xfs, xzs]), torch.cat([yfs, yzs]), n), 4)}


def pixel_features(view: str, dm: UIRecordingsDataModule) -> Callable:
    """What the data alone gives away: per recording, `colour` the mean RGB of every frame, `one_frame` the
    8x8-pixel cell means of its middle frame, `all_frames` those of every frame."""
    def features(dataset) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        for batch in batches(dataset, dm):
            v = batch["video"]                                                    # [B, C, T, H, W]
            if view == "colour":
                x = v.mean((3, 4))
            else:
                cells = torch.nn.functional.avg_pool3d(v, (1, 8, 8))
                x = cells[:, :, cells.size(2) // 2] if view == "one_frame" else cells
            feats.append(x.flatten(1))
            labels.append(batch["category"])
        return torch.cat(feats), torch.cat(labels)
    return features


# ----------------------------------------------------------------------------------------- intent decoder
def intent_decoder(encoder_path: str, seed: int, epochs: int, sets: dict, latency: bool) -> dict:
    """Trains the decoder on a frozen encoder; Intent Similarity on the seen-category, few-shot and zero-shot
    recordings."""
    from jepa_lightning.eval.intent_similarity import IntentSimilarity

    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = cli("decoder_tiny.yaml", Path(tmp), seed, epochs, f"--model.init_args.checkpoint={encoder_path}",
                  "--model.init_args.checkpoint_key=encoder")
        t0 = time.perf_counter()
        run.trainer.fit(run.model, datamodule=run.datamodule)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        result["final_loss"] = round(float(run.trainer.callback_metrics["train/loss"]), 4)
        model, dm = run.model.eval(), run.datamodule
        for split, dataset in sets.items():
            metric = IntentSimilarity()
            examples = []
            with torch.no_grad():
                for batch in batches(dataset, dm):
                    preds = model.generate(batch["video"])
                    metric.update(preds, batch["intent"])
                    examples += list(zip(batch["intent"], preds))[:2]
            result[split] = {k: round(float(v), 4) for k, v in metric.compute().items()}
            result[f"{split}_examples"] = examples[:4]
        if latency:
            result["parameters"] = model.parameter_counts()
            batch = next(batches(sets["seen"], dm, batch_size=1))
            times = []
            with torch.no_grad():
                for _ in range(6):
                    t0 = time.perf_counter()
                    model.generate(batch["video"])
                    times.append(time.perf_counter() - t0)
            result["latency_ms_per_recording"] = round(1000 * statistics.median(times[1:]), 1)
    return result


PIXEL_VIEWS = ("colour", "one_frame", "all_frames")
PROBED = ("random_init", "pretrained", "spatial", "context_encoder")  # arms of the category probe
DECODED = ("random_init", "pretrained", "spatial")  # arms of the intent decoder (the EMA teachers, the floor)


def train_seed(seed: int, args: argparse.Namespace, dm: UIRecordingsDataModule, sets: dict, out: Path) -> dict:
    """One seed's encoders (pretrained or reused), category probes and intent decoders."""
    st = pretrain("spatial_temporal", seed, args.epochs, out)
    sp = pretrain("spatial", seed, args.epochs, out)
    paths = {"random_init": random_encoder(seed, out)["path"], "pretrained": st["path"], "spatial": sp["path"],
             "context_encoder": st["context_path"]}
    result: dict = {"pretrain": {"spatial_temporal": st, "spatial": sp}, "probe": {}, "decoder": {}}
    for arm in PROBED:
        encoder = build_encoder(paths[arm])
        result["probe"][arm] = cached(out / f"probe_{arm}_s{seed}.json", category_probe,
                                      lambda dataset, e=encoder: slot_features(e, dm, dataset), dm, sets)
        print(f"seed {seed} {arm}: probe {result['probe'][arm]}", file=sys.stderr, flush=True)
    if "decoder" in args.stages:
        for arm in DECODED:
            result["decoder"][arm] = cached(out / f"decoder_{arm}_s{seed}.json", intent_decoder, paths[arm], seed,
                                            args.decoder_epochs, sets, latency=arm == "pretrained")
            print(f"seed {seed} {arm}: decoder {result['decoder'][arm]['seen']}", file=sys.stderr, flush=True)
    return result


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    """One seed in its own process (seeds run in parallel, `--jobs` at a time; every stage is cached, so a rerun
    resumes)."""
    cmd = [sys.executable, __file__, "--one", str(seed), "--synthetic", args.synthetic, "--epochs", str(args.epochs),
           "--decoder-epochs", str(args.decoder_epochs), "--train-per-category", str(args.train_per_category),
           "--eval-per-category", str(args.eval_per_category), "--image-size", *map(str, args.image_size),
           "--out", args.out, "--stages", *args.stages, *(["--cache-dir", args.cache_dir] if args.cache_dir else []),
           *(["--quick"] if args.quick else []), "--", *args.overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(seed_record(seed, args, out).read_text())


def seed_record(seed: int, args: argparse.Namespace, out: Path) -> Path:
    return out / f"seed{seed}_{'_'.join(args.stages)}.json"


def room_notes(score: dict[str, dict[str, list[float]]], seeds: list[int]) -> str:
    """What the data alone reads where it reads as much as an encoder, and how far the decoder's own seed moves
    intent similarity: where a claim fails for one of these, the page says so."""
    mean = statistics.mean
    notes = []
    for key in ("seen", "few_shot", "held_out_cv"):
        arms = score[f"category_{key}"]
        view = max(PIXEL_VIEWS, key=lambda v: mean(arms[f"{v}_pixels"]))
        pixels, networks = mean(arms[f"{view}_pixels"]), {a: mean(arms[a]) for a in PROBED}
        if pixels >= max(networks.values()):
            notes.append(f"category_{key}: the data alone ({view.replace('_', ' ')} pixels, {pixels:.1f} %) reads at "
                         f"least as much as every network (best {max(networks, key=networks.get)}, "
                         f"{max(networks.values()):.1f} %): this probe leaves no room to show what an encoder adds.")
    spread = [(split, arm, statistics.stdev(v)) for split in ("seen", "few_shot", "zero_shot")
              for arm, v in score.get(f"intent_similarity_{split}", {}).items() if len(seeds) > 1]
    if spread:
        split, arm, worst = max(spread, key=lambda t: t[2])
        notes.append(f"Intent similarity moves with the seed by up to {worst:.3f} (std, {arm} on {split}): the "
                     f"decoder, trained on ~200 recordings, is itself that noisy from seed to seed, so smaller gaps "
                     f"between encoders cannot be read.")
    return "".join(" " + n for n in notes)


def write_results(runs: dict[int, dict], floors: dict, args: argparse.Namespace, data: dict, seconds: float,
                  out: Path) -> Path:
    seeds = sorted(runs)
    probes, claims = [], []
    for key in ("seen", "few_shot", "held_out_cv"):
        arms = {arm: [100 * runs[s]["probe"][arm][key] for s in seeds] for arm in PROBED}
        arms |= {f"{view}_pixels": [100 * floors[view][key]] * len(seeds) for view in PIXEL_VIEWS}
        probes.append(probe_entry(f"category_{key}", "accuracy %", arms))
    decoded = "decoder" in args.stages
    if decoded:
        for split in ("seen", "few_shot", "zero_shot"):
            probes.append(probe_entry(f"intent_similarity_{split}", "intent similarity", {
                arm: [runs[s]["decoder"][arm][split]["intent_similarity"] for s in seeds] for arm in DECODED}))
    score = {p["name"]: p["scores"] for p in probes}
    if decoded:
        intent = score["intent_similarity_seen"]
        claims.append(gain_claim("spatial + temporal masks beat spatial-only: intent similarity (seen categories)",
                                 intent["pretrained"], intent["spatial"]))
    claims.append(gain_claim("spatial + temporal masks beat spatial-only: category probe (seen categories)",
                             score["category_seen"]["pretrained"], score["category_seen"]["spatial"]))
    if decoded:
        claims.append(gain_claim("few-shot intent similarity is above zero-shot",
                                 score["intent_similarity_few_shot"]["pretrained"],
                                 score["intent_similarity_zero_shot"]["pretrained"]))
        claims.append(gain_claim("pretrained beats random init: intent similarity (seen categories)",
                                 intent["pretrained"], intent["random_init"]))
    for arm, who in (("pretrained", "pretrained"), ("context_encoder", "the context encoder")):
        claims.append(gain_claim(f"{who} beats random init: category probe (seen categories)",
                                 score["category_seen"][arm], score["category_seen"]["random_init"]))
    st = [runs[s]["pretrain"]["spatial_temporal"] for s in seeds]
    setting = (f"synthetic UI recordings '{args.synthetic}' ({len(data['categories'])} categories, "
               f"{args.train_per_category} training recordings per common category), {args.image_size[0]}x"
               f"{args.image_size[1]} px, video ViT 96x4, {args.epochs} pretraining epochs ({st[0]['steps']} steps), "
               f"decoder {args.decoder_epochs} epochs")
    config = {k: v for k, v in vars(args).items() if k not in ("quick", "one", "jobs", "out", "cache_dir")} | {
        "quick": args.quick, "data": data}
    latency = [runs[s]["decoder"]["pretrained"]["latency_ms_per_recording"] for s in seeds] if decoded else []
    if decoded:
        config["pipeline"] = {"latency_ms_per_recording": latency,
                              "parameters": runs[seeds[0]]["decoder"]["pretrained"]["parameters"]}
    notes = (f"Arms: `pretrained` = the EMA teacher of the spatial + temporal run (the network UI-JEPA evaluates; "
             f"its init's remaining share {summary([r['ema_init_share'] for r in st])['mean']:g}), `spatial` = the "
             f"EMA teacher of the spatial-only run, `context_encoder` = the spatial + temporal run's context encoder, "
             f"`random_init` = the seed's initial network; `*_pixels`: the same probe on the data alone (the mean RGB "
             f"of every frame; 8x8-pixel cell means of the middle frame; of every frame). Chance: "
             f"{100 / len(data['categories']):.1f} % on the category probe. Categories: common {data['common']}, "
             f"few-shot {data['few_shot']}, zero-shot {data['zero_shot']}." + (
                 f" Latency of the pipeline (encoder + greedy generation, batch 1, median): {latency} ms per "
                 f"recording." if latency else "")) + room_notes(score, seeds)
    return save_result(f"ui_jepa_{args.synthetic}" + ("_quick" if args.quick else ""), "UI-JEPA",
                       "benchmarks/fidelity/ui_jepa.py", setting, config, seeds, seconds, probes, claims, notes=notes,
                       directory=out if args.quick else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--synthetic", default="interact", choices=["iit", "iiw", "interact"], help="the embedded set")
    p.add_argument("--epochs", type=int, default=40, help="pretraining epochs per encoder")
    p.add_argument("--decoder-epochs", type=int, default=60)
    p.add_argument("--train-per-category", type=int, default=24)
    p.add_argument("--eval-per-category", type=int, default=12)
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 48])
    p.add_argument("--cache-dir", default=None, help="where the synthetic recordings are generated (default: the cache)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_ui_jepa"),
                   help="encoders and per-run results are saved and reused below here (a rerun resumes)")
    p.add_argument("--stages", nargs="+", default=["probe", "decoder"], choices=["probe", "decoder"],
                   help="the category probe always runs; without `decoder` no intent decoder is trained")
    p.add_argument("--jobs", type=int, default=2, help="seeds in parallel, each in its own process, one thread each")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 seed, 1 epoch, small data")
    p.add_argument("--one", type=int, metavar="SEED", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="extra pretraining overrides (after --)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.epochs, args.decoder_epochs = args.seeds[:1], 1, 2
        args.train_per_category, args.eval_per_category = 2, 2
    DATA.update({"synthetic": args.synthetic, "train_per_category": args.train_per_category,
                 "eval_per_category": args.eval_per_category, "image_size": list(args.image_size), "num_workers": 1})
    if args.quick:
        DATA.update({"min_frames": 16, "max_frames": 24, "few_shot_train": 1})
    if args.cache_dir:
        DATA["cache_dir"] = args.cache_dir
    PRETRAIN.extend(args.overrides)
    # the settings' folder: its name has the sizes and a digest of the recipes' text and of the overrides, so a
    # changed recipe never reuses encoders trained with the old one
    digest = hashlib.sha1("\n".join([*(f.read_text() for f in RECIPE_FILES), *args.overrides]).encode())
    settings = (f"{args.synthetic}_e{args.epochs}_d{args.decoder_epochs}_n{args.train_per_category}_"
                f"{digest.hexdigest()[:10]}")
    out = Path(args.out) / settings
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dm = UIRecordingsDataModule(**{k: v for k, v in DATA.items() if k != "num_workers"})
    dm.prepare_data()
    dm.setup("fit")
    sets = evaluation_sets(dm)
    data = {"categories": dm.category_names, "common": sorted(set(dm.categories_of("train"))
                                                              - set(dm.categories_of("few_shot"))),
            "few_shot": dm.categories_of("few_shot"), "zero_shot": dm.categories_of("zero_shot"),
            "counts": {**{s: len(dm.intents_of(s)) for s in ("train", "few_shot", "zero_shot")},
                       "seen": len(sets["seen"])}}
    if args.one is not None:  # a worker process: one seed's encoders, probes and decoders, cached
        cached(seed_record(args.one, args, out), train_seed, args.one, args, dm, sets, out, fresh=True)
        return 0
    floors = cached(out / "pixels.json", lambda: {view: category_probe(pixel_features(view, dm), dm, sets)
                                                  for view in PIXEL_VIEWS})
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = dict(zip(args.seeds, pool.map(lambda seed: run_seed(seed, args, out), args.seeds)))
    spent = sum(r["pretrain"][v]["seconds"] for r in runs.values() for v in r["pretrain"]) + sum(
        d["seconds"] for r in runs.values() for d in r["decoder"].values())
    path = write_results(runs, floors, args, data, max(time.perf_counter() - t0, spent / min(args.jobs, len(runs))), out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
