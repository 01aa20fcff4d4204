"""UI-JEPA's claims at small scale, on the embedded synthetic UI screen recordings (IIT-like set, real mp4 files).

    python benchmarks/fidelity/ui_jepa.py [--seeds 0 1 --epochs 40 --decoder-epochs 60]

Per seed, with the tiny recipes (`recipes/ui_jepa/pretrain_tiny.yaml`, `recipes/ui_jepa/decoder_tiny.yaml`):
- two encoders pretrained on the unlabeled training recordings for the same number of epochs: `spatial_temporal`
  (UI-JEPA's masks: V-JEPA's spatial pair + whole hyper-frames) and `spatial` (the spatial pair only, i.e.
  V-JEPA's masks on UI data); and a `random` encoder (same architecture, untrained) as the floor;
- `seen`: new recordings of the common categories (generated with the next generator seed), never seen in
  training by encoder or decoder, of categories they trained on;
- a frozen intent-category probe on each: multinomial logistic regression on the encoder's tokens averaged per
  hyper-frame (so the probe sees the order of the moments), trained on the training split and scored on the
  `seen` recordings and on the few-shot split (categories with only `few_shot_train` training recordings), plus 4-fold cross-validated
  scores on the training split and on the evaluation recordings of the few-shot and zero-shot categories
  together (`held_out_cv`: recordings the encoder never saw, half of them of categories it never saw);
- the intent decoder (frozen encoder -> projection -> small GPT-2 trained here with a locally trained
  tokenizer) on each encoder, trained on the training split's (recording, intent) pairs and scored by greedy
  generation with Intent Similarity (mean of MiniLM cosine, ROUGE-1/2/L) on the `seen` recordings and on the
  few-shot and zero-shot splits;
- latency per recording (encoder + greedy generation, batch 1, median) and parameter counts of the pipeline.

Claims checked (UI-JEPA, Fu et al. 2024): (1) spatial + temporal masking beats spatial-only masking on intent
similarity and on the category probe (`seen` recordings); (2) few-shot intent similarity is above zero-shot
(held-out categories are harder); (3) a pretrained encoder beats a random one. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import cached, summary
from safetensors.torch import load_file, save_file
from torch import nn

from datamodules.common import collate_skipping
from datamodules.ui import UIRecordingDataset, UIRecordingsDataModule
from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.frozen_heads import fit_linear

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "ui_jepa"
DATA: dict = {}  # UIRecordingsDataModule arguments shared by every run (--cache-dir, sizes)
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
    """Pretrains one encoder (or reuses its saved teacher weights) -> {path, seconds, final loss}."""
    path = out / f"encoder_{variant}_s{seed}.safetensors"
    record = out / f"encoder_{variant}_s{seed}.json"
    if path.is_file() and record.is_file():
        return json.loads(record.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        run = cli("pretrain_tiny.yaml", Path(tmp), seed, epochs, f"--model.init_args.mask_seed={seed}",
                  *VARIANTS[variant])
        t0 = time.perf_counter()
        run.trainer.fit(run.model, datamodule=run.datamodule)
        info = {"path": str(path), "seconds": round(time.perf_counter() - t0, 1), "steps": run.trainer.global_step,
                "final_loss": round(float(run.trainer.callback_metrics["train/loss"]), 4)}
        save_file({k: v.contiguous() for k, v in run.model.teacher.module.state_dict().items()}, str(path))
    record.write_text(json.dumps(info))
    return info


def random_encoder(seed: int, out: Path) -> dict:
    path = out / f"encoder_random_s{seed}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        run = cli("pretrain_tiny.yaml", Path(tmp), seed, 1)
        save_file({k: v.contiguous() for k, v in run.model.encoder.state_dict().items()}, str(path))
    return {"path": str(path), "seconds": 0.0, "steps": 0}


def build_encoder(path: str) -> nn.Module:
    with tempfile.TemporaryDirectory() as tmp:
        encoder = cli("pretrain_tiny.yaml", Path(tmp), 0, 1).model.encoder
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


def category_probe(encoder: nn.Module, dm: UIRecordingsDataModule, sets: dict) -> dict[str, float]:
    n = dm.num_classes
    xtr, ytr = slot_features(encoder, dm, dm._dataset("train"))
    (xse, yse), (xfs, yfs), (xzs, yzs) = (slot_features(encoder, dm, sets[k]) for k in ("seen", "few_shot",
                                                                                           "zero_shot"))
    return {"seen": round(probe_accuracy(xtr, ytr, xse, yse, n), 4),
            "few_shot": round(probe_accuracy(xtr, ytr, xfs, yfs, n), 4),
            "held_out_cv": round(cross_validated(torch.cat([xfs, xzs]), torch.cat([yfs, yzs]), n), 4)}


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=40, help="pretraining epochs per encoder")
    p.add_argument("--decoder-epochs", type=int, default=60)
    p.add_argument("--train-per-category", type=int, default=24)
    p.add_argument("--eval-per-category", type=int, default=12)
    p.add_argument("--image-size", type=int, nargs=2, default=[96, 48])
    p.add_argument("--cache-dir", default=None, help="where the synthetic recordings are generated (default: the cache)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_ui_jepa"),
                   help="encoders and per-run results are saved and reused here (a rerun resumes)")
    p.add_argument("--stages", nargs="+", default=["pretrain", "probe", "decoder"])
    p.add_argument("--variants", nargs="+", default=["spatial_temporal", "spatial", "random"],
                   choices=["spatial_temporal", "spatial", "random"], help="a subset runs (and caches) only those")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds): 1 seed, 1 epoch, small data")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.epochs, args.decoder_epochs = args.seeds[:1], 1, 2
        args.train_per_category, args.eval_per_category = 2, 2
    DATA.update({"train_per_category": args.train_per_category, "eval_per_category": args.eval_per_category,
                 "image_size": list(args.image_size), "num_workers": 1})
    if args.quick:
        DATA.update({"min_frames": 16, "max_frames": 24, "few_shot_train": 1})
    if args.cache_dir:
        DATA["cache_dir"] = args.cache_dir
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dm = UIRecordingsDataModule(**{k: v for k, v in DATA.items() if k != "num_workers"})
    dm.prepare_data()
    dm.setup("fit")
    sets = evaluation_sets(dm)
    report: dict = {"data": {**DATA, "categories": dm.category_names, "common": sorted(
        set(dm.categories_of("train")) - set(dm.categories_of("few_shot"))), "few_shot": dm.categories_of("few_shot"),
        "zero_shot": dm.categories_of("zero_shot"), "counts": {
        **{s: len(dm.intents_of(s)) for s in ("train", "few_shot", "zero_shot")}, "seen": len(sets["seen"])}},
        "runs": {}}
    encoders = tuple(args.variants)
    for seed in args.seeds:
        runs = report["runs"][seed] = {}
        for variant in encoders:
            info = random_encoder(seed, out) if variant == "random" else pretrain(variant, seed, args.epochs, out)
            runs[variant] = {"pretrain": info}
            print(f"seed {seed} {variant}: pretrained {info}", file=sys.stderr, flush=True)
            if "probe" in args.stages:
                runs[variant]["probe"] = cached(out / f"probe_{variant}_s{seed}.json", category_probe,
                                                build_encoder(info["path"]), dm, sets)
                print(f"  probe {runs[variant]['probe']}", file=sys.stderr, flush=True)
            if "decoder" in args.stages:
                runs[variant]["decoder"] = cached(out / f"decoder_{variant}_s{seed}.json", intent_decoder,
                                                  info["path"], seed, args.decoder_epochs, sets,
                                                  latency=variant == "spatial_temporal")
                print(f"  decoder {runs[variant]['decoder']}", file=sys.stderr, flush=True)
    if encoders != ("spatial_temporal", "spatial", "random"):
        print(json.dumps(report, indent=1, default=str))
        return 0
    summaries: dict = {}
    for variant in encoders:
        per = [report["runs"][s][variant] for s in args.seeds]
        entry = summaries[variant] = {}
        if "probe" in args.stages:
            for key in per[0]["probe"]:
                entry[f"probe_{key}"] = summary([r["probe"][key] for r in per])
        if "decoder" in args.stages:
            for split in ("seen", "few_shot", "zero_shot"):
                entry[f"intent_similarity_{split}"] = summary([r["decoder"][split]["intent_similarity"] for r in per])
    report["summary"] = summaries
    if "decoder" in args.stages and "probe" in args.stages:
        st, sp, rnd = (summaries[v] for v in encoders)
        report["claims"] = {
            "temporal_masking_helps_intent": st["intent_similarity_seen"]["mean"] > sp["intent_similarity_seen"]["mean"],
            "temporal_masking_helps_probe": st["probe_seen"]["mean"] > sp["probe_seen"]["mean"],
            "few_shot_above_zero_shot": st["intent_similarity_few_shot"]["mean"]
            > st["intent_similarity_zero_shot"]["mean"],
            "pretrained_beats_random": st["intent_similarity_seen"]["mean"] > rnd["intent_similarity_seen"]["mean"],
        }
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
