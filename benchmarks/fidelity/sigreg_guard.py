"""Does the SIGReg guard keep a collapsing I-JEPA from collapsing, without hurting its probe?

    python benchmarks/fidelity/sigreg_guard.py [--seeds 0 1 2] [--steps 400] [--jobs 2]
    python benchmarks/fidelity/sigreg_guard.py --quick     # smoke test (3 steps, seed 0; not published)

Two collapsing settings of `benchmarks/fidelity/ijepa_collapse.py`, I-JEPA on the tiny digits recipe at the
official lr 1e-3 (batch 64): paper_ema, the paper's EMA 0.996 -> 1 (train/target_std 0.36 -> 0.08 by step 250, 0.03
at the end of 880 steps), and no_ema, no teacher at all (`--model.init_args.ema=null`: the encoder predicts its own
outputs under stop-gradient). The guarded arms are the same runs with `--model.init_args.sigreg_weight` at the
paper's lambda 0.05 or at 0.01, SIGReg (added to the loss by methods/base.py) acting on the context encoder's pooled
output as it is ("raw") or through LeJEPA's projector (`--model.init_args.sigreg_projector`, `nn.Projector`
96 -> 512 -> 512 -> 64 as in the tiny LeJEPA recipe; "proj"). All arms run through ijepa_collapse.py's worker
(same cache, runs/bench_ijepa_collapse) and are probed frozen on centred features next to the random init (linear,
kNN, RankMe; the evaluated network, the teacher where there is one, and the context encoder). Claims: the
unguarded targets collapse (final train/target_std below 0.1, the collapse monitor's line), the guarded ones do
not, and the guarded run's evaluated network probes not worse than the unguarded one's (difference >= -2 x
combined std). "pretrained" in the result is the guard as LeJEPA applies SIGReg: through the projector, at lambda
0.05, on paper_ema. Writes benchmarks/results/sigreg_guard.json (common.py schema).

What it measured (3 seeds, 400 steps, 2 cores: 2-3 min a run, ~30 min for the 21 runs with 2 jobs): through the
projector the guard holds every claim. The targets stay spread (target_std 0.31 and 0.30 at weights 0.05 and
0.01 with the EMA teacher, 0.27 without one, against 0.077 and 0.033 unguarded), the teacher probes level with the
unguarded one (linear 85.6 against 86.8 %, kNN 76.1 against 75.7 %), its context encoder far better (linear 88.9
against 78.8 %, kNN 75.2 against 60.0 %), and without a teacher the guarded encoder reaches linear 87.6 % / kNN
74.3 % where the unguarded one collapses to the random init's level (79.9 / 65.4 %; random init 78.4 / 64.0 %).
On the raw pooled output the guard also keeps the targets spread (0.71) but leads training: that output, after the
encoder's final LayerNorm, has a large sample-independent mean and a small spread, so its SIGReg is far from a
Gaussian's (~6 at weight 0.05 and ~500 at 0.0001 in an earlier run of this script, at N = 64), its gradient
dominates I-JEPA's whatever the weight (Adam's per-parameter normalisation takes out most of the weight's scale:
0.05 and 0.01 give the same probes), and the teacher probes worse (kNN 59.3 against 75.7 %). The projector's
BatchNorm and biases absorb that mean and scale, so SIGReg shapes only what the embeddings carry. The EMA teacher
keeps 45 % of its random init at 400 steps (0.996 -> 1, no average start), which is why the collapsed teacher
still probes at the init's level and above; the context encoders show the guard's effect without that share.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import claim_entry, in_parallel, probe_entry, run_worker, save_result, summary
from ijepa_collapse import CACHE, PROBES, SIGREG_ARMS, VARIANTS

ROOT = Path(__file__).resolve().parents[2]
BASES = ("paper_ema", "no_ema")  # the unguarded arms: the paper's EMA teacher, and no teacher (stop-gradient)
GUARD_ARMS = {arm: f"{'' if base == 'paper_ema' else base + '_'}{'proj' if projector else 'raw'}_{weight:g}"
              for arm, (base, weight, projector) in SIGREG_ARMS.items()}  # arm: its name in the result
WORDS = {arm: f"{base}, SIGReg at weight {weight:g} {'through the projector' if projector else 'on the pooled output'}"
         for arm, (base, weight, projector) in SIGREG_ARMS.items()}  # arm: its name in the claims
EMA_ARMS = ["paper_ema", *(a for a, (base, *_) in SIGREG_ARMS.items() if base == "paper_ema")]  # with a teacher
GUARD_ARM = "paper_ema_sigreg_proj"  # as LeJEPA applies SIGReg (projector, lambda 0.05): the "pretrained" arm
FLOOR = 0.1  # a final train/target_std below it is collapse (as in ijepa_collapse.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 steps, seed 0, not published")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.seeds = 3, [0]
    script = str(Path(__file__).with_name("ijepa_collapse.py"))
    t0 = time.perf_counter()

    def one(arm: str, seed: int) -> dict:
        return run_worker(CACHE / f"{arm}_s{seed}_{args.steps}.json", script,
                          ["--one", arm, str(seed), "--steps", str(args.steps)], f"{arm} seed {seed}", args.fresh)

    arms = (*BASES, *GUARD_ARMS)
    jobs = [(arm, s) for s in args.seeds for arm in arms]
    runs = {(r["variant"], r["seed"]): r for r in in_parallel(one, jobs, args.jobs)}
    seeds = args.seeds
    seconds = max(time.perf_counter() - t0, sum(r["train_seconds"] for r in runs.values()) / args.jobs)

    def scores(arm: str, net: str, probe: str) -> list[float]:
        """`net` of `arm`: "teacher" (the evaluated network: the EMA teacher, or the encoder without one),
        "encoder" (the context encoder) or "random_init"."""
        scale = 100 if probe.endswith("acc") else 1
        return [scale * runs[(arm, s)].get(net, runs[(arm, s)]["encoder"])[probe] for s in seeds]

    probes = [probe_entry(p, metric, {"random_init": scores("paper_ema", "random_init", p),
                                      "pretrained": scores(GUARD_ARM, "teacher", p),
                                      "unguarded": scores("paper_ema", "teacher", p),
                                      "unguarded_no_ema": scores("no_ema", "encoder", p),
                                      **{f"sigreg_{n}": scores(a, "teacher", p) for a, n in GUARD_ARMS.items()},
                                      **{f"sigreg_{n}_encoder": scores(a, "encoder", p) for a, n in GUARD_ARMS.items()
                                         if SIGREG_ARMS[a][0] == "paper_ema"},
                                      "unguarded_encoder": scores("paper_ema", "encoder", p)})
              for p, metric in PROBES.items()]

    def final_std(arm: str) -> list[float]:
        return [runs[(arm, s)]["curves"]["train/target_std"][-1][1] for s in seeds]

    claims = [claim_entry(f"without the guard ({base}) the targets collapse (final train/target_std below {FLOOR})",
                          summary(final_std(base))["mean"], f"< {FLOOR} in every seed",
                          bool(max(final_std(base)) < FLOOR)) for base in BASES]
    for arm, words in WORDS.items():
        base = SIGREG_ARMS[arm][0]
        claims.append(claim_entry(f"{words}: the targets do not collapse (final train/target_std above {FLOOR})",
                                  summary(final_std(arm))["mean"], f"> {FLOOR} in every seed",
                                  bool(min(final_std(arm)) > FLOOR)))
        for p in ("linear_acc", "knn_acc"):
            guarded, unguarded = scores(arm, "teacher", p), scores(base, "teacher", p)
            diff = summary(guarded)["mean"] - summary(unguarded)["mean"]
            spread = (summary(guarded)["std"] ** 2 + summary(unguarded)["std"] ** 2) ** 0.5
            claims.append(claim_entry(f"{words}: the evaluated network's {p.replace('_acc', '')} probe is not worse "
                                      f"than {base}'s unguarded (accuracy points)", diff,
                                      f">= -2 x combined std ({-2 * spread:.3g})", bool(diff >= -2 * spread)))
    monitors = {f"{arm}_s{s}": {"train/target_std": runs[(arm, s)]["curves"]["train/target_std"]}
                for arm in arms for s in seeds}
    path = save_result("sigreg_guard", "I-JEPA + SIGReg", "benchmarks/fidelity/sigreg_guard.py",
                       f"digits 32 px (recipes/ijepa/tiny.yaml), official lr 1e-3, EMA 0.996 -> 1 or no EMA teacher, "
                       f"{args.steps} steps; with and without the SIGReg guard",
                       {"steps": args.steps, "arms": {a: VARIANTS[a] for a in arms}, "floor": FLOOR},
                       seeds, seconds, probes, claims, monitors,
                       notes="pretrained: the teacher guarded as LeJEPA applies SIGReg (sigreg_proj_0.05: projector, lambda 0.05); "
                             "raw: SIGReg on the pooled output itself; unguarded: the same run without SIGReg; no_ema: "
                             "no teacher (the encoder's own targets under stop-gradient; its encoder is evaluated). Teacher's init "
                             "share (the EMA teacher's weight on its random init at the end): "
                             + ", ".join(f"{a} {summary([runs[(a, s)]['ema_init_share'] for s in seeds])['mean']:.3g}"
                                         for a in EMA_ARMS),
                       directory=CACHE if args.quick else None)
    print(path.read_text())


if __name__ == "__main__":
    main()
