"""SALT's claims at small scale, on the embedded moving-objects videos (datamodules.MovingObjectsDataModule), next to
V-JEPA at the same training FLOPs.

    python benchmarks/fidelity/salt.py [--seeds 0 1 2] [--teacher-steps 400] [--jobs 2] [-- OVERRIDES]
    python benchmarks/fidelity/salt.py --quick          # smoke test (~2 min)

Per seed, with `recipes/salt/objects_{teacher,student}_tiny.yaml` (the encoder, predictor, masks and optimizer of
`recipes/vjepa/objects_tiny.yaml`; only the targets differ):
- three SALT teachers (stage 1, pixel reconstruction under V-JEPA's masks): `strong` (`--teacher-steps`, the
  student's width), `short` (a quarter of its steps), `narrow` (half the width: 48);
- one SALT student (stage 2) per teacher, all with the same number of steps: as many as make the strong
  teacher + its student cost V-JEPA's training FLOPs (`--vjepa-steps` of recipes/vjepa/objects_tiny.yaml). One
  step's FLOPs of each recipe are counted with `torch.utils.flop_counter` (`step_flops`, the mean over a few
  mask draws) and every run's FLOPs are logged by the `TrainingFLOPs` callback and reported;
- V-JEPA itself, its random initialisation and their probes come from benchmarks/fidelity/vjepa.py's cached
  runs at the same seed and settings (run there when missing): the same architecture, data and probes.
Every network is probed frozen as vjepa.py does (`vjepa.evaluate`: the attentive probe, a mean-pooled linear
cross-check, the token-variance shares), on appearance (`shape`) and motion (`motion`). The weak teachers
themselves are not probed (no claim reads them).

Claims (SALT, Li et al. 2025), on the attentive probe, per label:
1. the student beats its own frozen teacher (> 2 x the combined seed std);
2. the students of the weak teachers (`short`, `narrow`) land within `--tolerance` points of the strong teacher's
   student (the mean gap);
3. at matched total training FLOPs (teacher included), SALT beats V-JEPA (> 2 x the combined seed std);
and, as for every variant, the student beats random init.

Runs are cached as JSON under runs/bench_salt (one per seed and teacher; reruns resume, --fresh recomputes; the
networks' weights beside each as .pt), each in its own process (`--jobs` at a time, one thread each).
Runtime on 2 cores: a student step takes ~0.53 s at one thread (as a V-JEPA step), a teacher step ~0.52 s (data
loading dominates its smaller compute), a 60-epoch probe ~3 min per network; one seed's three teacher-student
pairs ~50 min at one thread; 3 seeds took 77 min of wall time with two jobs (2026-12-05; the JSON's `seconds`,
the runs' summed time over the jobs, says 73), over the issue's 45-min budget (plus V-JEPA's own runs when they are
not cached).
Over fresh noise backgrounds (`-- --data.init_args.background=noise`; exploration of 2026-12-05, strong pair only,
seeds 0-2, shape / motion attentive %): random init 20.5 +- 2.8 / 86.2 +- 1.6, the 400-step pixel teacher
31.9 +- 1.4 / 91.8 +- 1.7 (above its init by more than twice the combined std on both labels: the one video
encoder here that does), its 1248-step student 23.7 +- 3.0 / 79.4 +- 2.3 (V-JEPA, seed 0: 11.4 / 60.8). Pixel
targets teach the objects; predicting even a good frozen teacher's latents loses most of it again.
Why (seed 0, noise backgrounds, same probes; pilots of 2026-12-05, not this script's runs): along its run the
student reads 24.2 / 87.8 at step 300, 22.8 / 81.8 at 600, 22.0 / 78.6 at 1248 (its teacher 32.8 / 90.4, random
init 21.2 / 84.6). Its targets, the teacher's LayerNormed tokens, are 76 % position, 2 % one code per video and 22 %
local content (`eval.variance_shares` over 1300 clips; `train/target_position_share` logs it); each position's
median alone predicts them at an L1 of 0.117, below the student's final loss (0.158). Short-range masks alone (70 %
of the tokens as context) end at the same loss (0.160) and probes (22.6 / 81.6): the predictor hardly reads the
context. Targets minus their running per-position mean (an ablation) turn the student onto the video code (video
share 0.54, 17.0 / 67.4). What the context predicts here is position and the video code, not the local content of a
masked block, so latent prediction teaches neither object. A patch embedding at the paper's scale
(`--model.init_args.encoder.init_args.patch_init_std=0.04`, see nn.VisionTransformer) shifts the teacher's
targets to 44 % position / 50 % local, its pixel teacher reads 28.8 / 91.4 against its random init's 18.6 / 89.8,
and its student again stays at the init's level (19.8 / 85.2).
Writes benchmarks/results/salt_objects.json (the common.py schema).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import vjepa
from common import (
    cached,
    claim_entry,
    gain_claim,
    override_tag,
    probe_entry,
    run_worker,
    save_result,
    summary,
    train_recipe,
)

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "recipes" / "salt" / "objects_teacher_tiny.yaml"
STUDENT = ROOT / "recipes" / "salt" / "objects_student_tiny.yaml"
CACHE = ROOT / "runs" / "bench_salt"
LABELS = vjepa.LABELS
NARROW = 48
# teacher name -> (share of --teacher-steps, width)
TEACHERS = {"strong": (1.0, None), "short": (0.25, None), "narrow": (1.0, NARROW)}
QUICK_STUDENT = ["--model.init_args.teacher.init_args.depth=1"]  # the quick teacher's depth (vjepa.QUICK: 1 block)


def teacher_overrides(width: int | None) -> list[str]:
    return [] if width is None else [f"--model.init_args.{part}.init_args.embed_dim={width}"
                                     for part in ("encoder", "predictor")]


def student_overrides(width: int | None, checkpoint: str | None) -> list[str]:
    out = [f"--model.init_args.teacher_checkpoint={checkpoint or 'null'}"]
    if width is not None:  # a narrower frozen teacher: the predictor outputs its width
        out += [f"--model.init_args.teacher.init_args.embed_dim={width}",
                f"--model.init_args.predictor.init_args.out_dim={width}"]
    return out


def step_cost(recipe: Path, overrides: list[str], draws: int = 16) -> float:
    """Mean FLOPs of one training step of ``recipe`` (forward + backward of its objective, `step_flops`) on a
    batch of the recipe's batch and clip size, over ``draws`` mask draws (at the real batch size: V-JEPA's masks
    keep the batch's smallest context, so the tokens per clip depend on it)."""
    from jepa_lightning.cli import JEPACLI
    from jepa_lightning.eval.flops import step_flops

    cli = JEPACLI(run=False, args=["--config", str(recipe), "--run_dir", tempfile.gettempdir(), *overrides])
    model, dm = cli.model, cli.datamodule
    encoder = model.network("encoder")
    t, h, w = encoder.grid_size
    embed = encoder.patch_embed
    batch = {"video": torch.randn(dm.hparams.batch_size, embed.in_chans, t * embed.tubelet_size, h * embed.patch_size,
                                  w * embed.patch_size)}
    counts = []
    for draw in range(draws):
        batch["masks"] = model.sample_masks(batch, torch.Generator().manual_seed(draw))
        counts.append(step_flops(model, batch))
    return sum(counts) / len(counts)


def matched_student_steps(args: argparse.Namespace, extra: list[str]) -> tuple[int, dict[str, float]]:
    """The student's steps that make the strong teacher + its student cost `--vjepa-steps` V-JEPA steps."""
    costs = {"vjepa": step_cost(vjepa.RECIPE, extra), "teacher": step_cost(TEACHER, extra),
             "student": step_cost(STUDENT, [*extra, *student_overrides(None, None),
                                            *(QUICK_STUDENT if args.quick else [])])}
    budget = args.vjepa_steps * costs["vjepa"] - args.teacher_steps * costs["teacher"]
    if budget < costs["student"]:
        raise SystemExit(f"--teacher-steps {args.teacher_steps} cost more than --vjepa-steps {args.vjepa_steps} "
                         f"V-JEPA steps: nothing is left for the student")
    return round(budget / costs["student"]), costs


def run(seed: int, teacher: str, args: argparse.Namespace, extra: list[str], weights: Path) -> dict:
    """Train one teacher, then its student; probe the student (and the strong teacher)."""
    from jepa_lightning.eval.flops import TrainingFLOPs

    share, width = TEACHERS[teacher]
    teacher_steps = max(round(share * args.teacher_steps), 1)
    every = max(args.student_steps // 60, 1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        flops = TrainingFLOPs()
        t_cli, _, t_sec, _ = train_recipe(TEACHER, seed, teacher_steps, ["--trainer.callbacks=[]", *extra,
                                                                           *teacher_overrides(width)],
                                          f"{tmp}/teacher", every, callbacks=[flops])
        t_run = run_record(t_cli, t_sec, flops)
        flops = TrainingFLOPs()
        s_cli, _, s_sec, curves = train_recipe(
            STUDENT, seed, args.student_steps,
            ["--trainer.callbacks=[]", *extra, *(QUICK_STUDENT if args.quick else []),
             *student_overrides(width, f"{tmp}/teacher/ckpt/last.ckpt")], f"{tmp}/student", every, callbacks=[flops])
        s_run = run_record(s_cli, s_sec, flops)
    networks = {"student": s_cli.model.network("encoder")}
    if teacher == "strong":
        networks["teacher"] = t_cli.model.network("encoder")
    torch.save({k: v.state_dict() for k, v in networks.items()}, weights)
    probe = {k: vjepa.evaluate(net, s_cli.datamodule, seed, args.probe_epochs) for k, net in networks.items()}
    return {"seed": seed, "teacher": teacher, "runs": {"teacher": t_run, "student": s_run}, "probe": probe,
            "curves": curves, "seconds": round(time.perf_counter() - start, 1)}


def run_record(cli, seconds: float, flops) -> dict:
    """What one training run reports: its steps, time, counted FLOPs and final loss."""
    return {"steps": cli.trainer.global_step, "train_seconds": round(seconds, 1), "flops": flops.total_flops,
            "final_loss": round(float(cli.trainer.callback_metrics["train/loss"]), 4)}


def cache_path(seed: int, teacher: str, args: argparse.Namespace) -> Path:
    settings = f"t{args.teacher_steps}_s{args.student_steps}_p{args.probe_epochs}" + ("_quick" if args.quick else "")
    return CACHE / f"salt_{teacher}_s{seed}_{settings}{override_tag(args.overrides)}.json"


def run_cached(job: tuple[int, str], args: argparse.Namespace) -> dict:
    """One seed's teacher-student pair in its own process, cached by its settings."""
    seed, teacher = job
    return run_worker(cache_path(seed, teacher, args), __file__, [
        "--one", f"{seed}:{teacher}", "--teacher-steps", str(args.teacher_steps), "--student-steps",
        str(args.student_steps), "--probe-epochs", str(args.probe_epochs), *(["--quick"] if args.quick else []), "--",
        *args.overrides], f"SALT seed {seed}, {teacher} teacher", args.fresh)


def vjepa_cached(seed: int, args: argparse.Namespace) -> dict:
    """V-JEPA's run at this seed from vjepa.py's cache (trained there when missing)."""
    ns = argparse.Namespace(steps=args.vjepa_steps, probe_epochs=args.probe_epochs, overrides=args.overrides,
                            quick=args.quick,
                            ceiling_seed=0, fresh=False)
    return vjepa.run_cached(seed, ns)


def write_results(pairs: dict[tuple[int, str], dict], vj: dict[int, dict], args: argparse.Namespace,
                  costs: dict[str, float], seconds: float) -> Path:
    seeds = sorted(vj)

    def arm(name: str, probe: str) -> list[float]:
        if name == "vjepa":
            return [vj[s]["pretrained"][probe] for s in seeds]
        if name == "random_init":
            return [vj[s]["random_init"][probe] for s in seeds]
        network, teacher = name.split("_")
        return [pairs[(s, teacher)]["probe"][network][probe] for s in seeds]

    arms = {"random_init": "random_init", "pretrained": "student_strong", "teacher_strong": "teacher_strong",
            "student_short": "student_short", "student_narrow": "student_narrow", "vjepa": "vjepa"}
    probes = [probe_entry(p, metric, {a: arm(n, p) for a, n in arms.items()}) for p, metric in vjepa.PROBES.items()]
    probes += [probe_entry(p, "share of token variance", {a: arm(n, p) for a, n in arms.items()}, higher_is_better=h)
               for p, h in vjepa.SHARES.items()]
    claims = []
    for label in LABELS:
        p = f"{label}_attentive"
        student = arm("student_strong", p)
        claims.append(gain_claim(f"{label}: the SALT student beats its frozen teacher", student,
                                 arm("teacher_strong", p)))
        for weak in ("short", "narrow"):
            gap = summary([a - b for a, b in zip(arm(f"student_{weak}", p), student)])
            claims.append(claim_entry(f"{label}: the {weak} teacher's student lands within {args.tolerance:g} points "
                                      f"of the strong teacher's", gap["mean"], f"|mean gap| <= {args.tolerance:g}",
                                      abs(gap["mean"]) <= args.tolerance))
        claims.append(gain_claim(f"{label}: SALT beats V-JEPA at matched training FLOPs", student, arm("vjepa", p)))
        claims.append(gain_claim(f"{label}: the SALT student beats random init", student, arm("random_init", p)))
    tflops = {name: summary([pairs[(s, name)]["runs"]["teacher"]["flops"] / 1e12 for s in seeds])["mean"]
              for name in TEACHERS}
    student_tflops = summary([pairs[(s, "strong")]["runs"]["student"]["flops"] / 1e12 for s in seeds])["mean"]
    vjepa_tflops = args.vjepa_steps * costs["vjepa"] / 1e12
    setting = (f"MovingObjects 64 px, 8-frame clips, video ViT 96x4 (tubelets 2x8x8), batch 32; teachers "
               f"{args.teacher_steps} steps (short: {max(round(args.teacher_steps / 4), 1)}, narrow: width {NARROW}), "
               f"students {args.student_steps} steps; V-JEPA {args.vjepa_steps} steps (same FLOPs)")
    config = {"teacher_steps": args.teacher_steps, "student_steps": args.student_steps,
              "vjepa_steps": args.vjepa_steps, "probe_epochs": args.probe_epochs, "quick": args.quick,
              "overrides": args.overrides,
              "recipes": [str(r.relative_to(ROOT)) for r in (TEACHER, STUDENT, vjepa.RECIPE)],
              "gflop_per_step": {k: round(v / 1e9, 3) for k, v in costs.items()}, "tolerance": args.tolerance}
    salt_total = tflops["strong"] + student_tflops
    notes = (f"Training compute (measured, TFLOP): strong teacher {tflops['strong']:.3g} + its student "
             f"{student_tflops:.3g} = {salt_total:.3g} for SALT against V-JEPA's {vjepa_tflops:.3g} "
             f"({args.vjepa_steps} steps x {costs['vjepa'] / 1e9:.3g} GFLOP, the mean over 16 mask draws), a ratio "
             f"of {salt_total / vjepa_tflops:.3f} (the runs' counts extrapolate their first 5 batches, whose masks "
             f"vary); the short "
             f"teacher {tflops['short']:.3g}, the narrow one {tflops['narrow']:.3g}. `pretrained` is the strong "
             f"teacher's student (the network SALT evaluates); `random_init` and `vjepa` (its EMA teacher) come "
             f"from benchmarks/fidelity/vjepa.py's runs at the same seeds (the same ViT, data and probes). "
             f"Chance: shape 10 %, motion 12.5 %.")
    loss = summary([pairs[(s, "strong")]["runs"]["teacher"]["final_loss"] for s in seeds])["mean"]
    mean = {name: {p: summary(arm(name, p))["mean"] for p in ("shape_attentive", "motion_attentive", "video_share",
                                                               "local_share")}
            for name in ("random_init", "teacher_strong", "student_strong", "vjepa")}
    notes += (f"\n\nWhat the runs show: the strong teacher ends at a reconstruction loss of {loss:.3f} (normalized "
              f"pixels: 1 = predicting each tubelet's mean), and its probes stay at its random init's level (shape "
              f"{mean['teacher_strong']['shape_attentive']:.1f} vs {mean['random_init']['shape_attentive']:.1f} %, "
              f"motion {mean['teacher_strong']['motion_attentive']:.1f} vs "
              f"{mean['random_init']['motion_attentive']:.1f} %). Its students, like V-JEPA, move their token "
              f"variance from local content to one code per video (local share "
              f"{mean['random_init']['local_share']:.2f} at init -> {mean['student_strong']['local_share']:.2f}, "
              f"V-JEPA {mean['vjepa']['local_share']:.2f}; video share {mean['random_init']['video_share']:.2f} -> "
              f"{mean['student_strong']['video_share']:.2f}, V-JEPA {mean['vjepa']['video_share']:.2f}) and score "
              f"below it on shape ({mean['student_strong']['shape_attentive']:.1f} %).")
    monitors = {f"salt_student_s{s}": pairs[(s, "strong")]["curves"] for s in seeds}
    return save_result("salt_objects" + ("_quick" if args.quick else ""), "SALT", "benchmarks/fidelity/salt.py",
                       setting, config, seeds, seconds, probes, claims, monitors, notes=notes,
                       directory=CACHE if args.quick else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-steps", type=int, default=400, help="the strong teacher's steps (short: a quarter)")
    ap.add_argument("--vjepa-steps", type=int, default=1500, help="V-JEPA's steps, whose FLOPs SALT gets")
    ap.add_argument("--student-steps", type=int, default=None, help="default: SALT's total FLOPs = V-JEPA's")
    ap.add_argument("--probe-epochs", type=int, default=60)
    ap.add_argument("--tolerance", type=float, default=3.0, help="claim 2: points between students")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    ap.add_argument("--quick", action="store_true", help="smoke test: vjepa.py's quick data and model, one seed")
    ap.add_argument("--fresh", action="store_true", help="recompute cached runs")
    ap.add_argument("--one", metavar="SEED:TEACHER", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra CLI overrides for every run, V-JEPA's included (after --)")
    args = ap.parse_args()
    extra = (list(vjepa.QUICK) if args.quick else []) + args.overrides
    if args.quick:
        args.seeds, args.probe_epochs, args.vjepa_steps = args.seeds[:1], 2, 10
        args.teacher_steps = min(args.teacher_steps, 4)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.one is not None:  # a worker process: one teacher-student pair, cached
        seed, teacher = args.one.split(":")
        path = cache_path(int(seed), teacher, args)
        cached(path, run, int(seed), teacher, args, extra, path.with_suffix(".pt"), fresh=True)
        return
    torch.set_num_threads(1)
    matched, costs = matched_student_steps(args, extra)
    args.student_steps = args.student_steps or matched
    print(f"SALT students: {args.student_steps} steps (GFLOP per step: "
          + ", ".join(f"{k} {v / 1e9:.3g}" for k, v in costs.items()) + ")", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    jobs = [(s, t) for s in args.seeds for t in TEACHERS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        vj_future = {s: pool.submit(vjepa_cached, s, args) for s in args.seeds}
        pair_results = list(pool.map(lambda job: run_cached(job, args), jobs))
        vj = {s: f.result() for s, f in vj_future.items()}
    pairs = dict(zip(jobs, pair_results))
    seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in pair_results) / args.jobs)
    print(write_results(pairs, vj, args, costs, seconds).read_text())


if __name__ == "__main__":
    main()
