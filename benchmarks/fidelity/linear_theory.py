"""Deep linear JEPA vs MAE (Littwin et al., 2024): learning order and critical times vs the paper's ODE.

    python benchmarks/fidelity/linear_theory.py [--depths 1 2 3 4 5] [--quick]

Data (``datamodules.linear``): two features in a random orthogonal basis, exact covariances (full-batch GD is then
the population dynamics): feature 0 has the larger cross-covariance lambda and the smaller regression
coefficient rho (1.0 / 0.5), feature 1 the reverse (0.75 / 1.0). For every depth L and both objectives, the
model (``jepa_lightning.methods.linear_theory.DeepLinearSSL``, random orthogonal balanced init of end-to-end
scale eps = 0.01) is trained by GD with the Lightning Trainer, and each feature's critical time (continuous time
``lr * step`` at which ``|Wbar u_i|`` reaches half its asymptote) is compared with the one from integrating the
per-feature ODE numerically. The step size of each run is chosen from the ODE: small enough that the Euler
step is accurate (``lr * max|f'| <= --courant``) and that at least ``--steps-before`` steps precede the first
critical time; the run lasts ``--horizon`` times the last critical time.

Claims (``claims``, each with ``holds``):
  1. MAE learns the features in order of lambda at every depth.
  2. JEPA learns the (high lambda, low rho) feature first at the shallowest depth and the (low lambda, high
     rho) feature first at every depth from some inversion depth on; the measured inversion depth equals the
     ODE's.
  3. Past that depth, JEPA's whole learning order is the order of rho.
  4. Every measured critical time is within ``--tolerance`` (10%) of the ODE's.
An SGD run (minibatches of sampled, not exact, data) is reported for information, without a claim.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import claim_entry, save_result
from lightning.pytorch import Trainer

from datamodules.linear import LinearPairsDataModule
from jepa_lightning.methods.linear_theory import (
    DeepLinearSSL,
    asymptote,
    critical_time,
    learning_order,
    ode_critical_time,
)


def max_rate(objective: str, lambdas: list[float], rhos: list[float], depth: int, eps: float) -> float:
    """``max |f'(w)|`` of the per-layer ODE ``dw/dt = f(w)`` between the initialization and the fixed point,
    over the features: Euler (= GD) with step ``lr`` is accurate when ``lr * max|f'|`` is small."""
    worst = 0.0
    for lam, rho in zip(lambdas, rhos):
        s2, L = lam / rho, depth
        w_end = rho if objective == "jepa" else rho ** (1 / (L + 1))
        w = np.linspace(eps ** (1 / L), w_end, 4000)
        if objective == "jepa":
            fp = 2 * L * lam * w ** (2 * L - 1) - (2 * L + 1) * s2 * w ** (2 * L)
        else:
            fp = L * lam * w ** (L - 1) - (2 * L + 1) * s2 * w ** (2 * L)
        worst = max(worst, float(np.abs(fp).max()))
    return worst


def train(objective: str, depth: int, args, lr: float, steps: int, batch_size: int | None = None,
          exact: bool = True, num_samples: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """One run; returns (times, magnitudes [T, d], seconds)."""
    dm = LinearPairsDataModule(args.lambdas, args.rhos, noise=0.1, num_samples=num_samples, num_val_samples=16,
                               exact_covariance=exact, rotate=True, batch_size=batch_size,
                               steps_per_epoch=min(steps, 1000), seed=args.seed)
    model = DeepLinearSSL(dim=len(args.lambdas), depth=depth, objective=objective, init_scale=args.init_scale,
                          init="orthogonal", init_seed=args.seed, lr=lr,
                          optimizer="gd" if batch_size is None else "sgd")
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - t0
    times, mags = model.magnitude_history()
    return times, mags, seconds


def inversion_depth(orders: dict[int, list[int]], late: list[int]) -> int | None:
    """The smallest depth from which on every (larger) depth's order starts with the ``late`` order's pair."""
    depths = sorted(orders)
    for k, depth in enumerate(depths):
        if all(orders[d][:len(late)] == late for d in depths[k:]):
            return depth if k > 0 else None  # an inversion needs a shallower depth with the other order
    return None


def pair_order(order: list[int], pair: tuple[int, int]) -> list[int]:
    return [i for i in order if i in pair]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--lambdas", type=float, nargs="+", default=[1.0, 0.75])
    p.add_argument("--rhos", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--init-scale", type=float, default=0.01)
    p.add_argument("--fraction", type=float, default=0.5, help="critical time: this fraction of the asymptote")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--courant", type=float, default=0.4, help="lr * max|f'| of the per-layer ODE")
    p.add_argument("--steps-before", type=int, default=200, help="at least this many steps before the first "
                   "critical time")
    p.add_argument("--horizon", type=float, default=1.2, help="run for this multiple of the last critical time")
    p.add_argument("--sgd-batch", type=int, default=32, help="SGD check: minibatch size (0: skip the check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: depths 1 and 4, coarser steps, no SGD")
    args = p.parse_args()
    if args.quick:
        args.depths, args.steps_before, args.courant, args.sgd_batch = [1, 4], 30, 0.8, 0
    if len(args.lambdas) != len(args.rhos):
        p.error(f"--lambdas ({len(args.lambdas)}) and --rhos ({len(args.rhos)}) need one value per feature")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    lam, rho = np.asarray(args.lambdas), np.asarray(args.rhos)
    by_lambda, by_rho = learning_order(-lam), learning_order(-rho)
    pair = (by_lambda[0], by_rho[0])  # (high lambda, low rho) vs (low lambda, high rho)
    if pair[0] == pair[1]:
        p.error("the feature with the largest lambda must not also have the largest rho: nothing to invert")

    runs, t_start = [], time.perf_counter()
    measured_orders: dict[str, dict[int, list[int]]] = {"jepa": {}, "mae": {}}
    ode_orders: dict[str, dict[int, list[int]]] = {"jepa": {}, "mae": {}}
    for objective in ("mae", "jepa"):
        for depth in args.depths:
            ode_t = ode_critical_time(objective, args.lambdas, args.rhos, depth, args.init_scale, args.fraction)
            if np.any(ode_t <= 0):
                p.error(f"depth {depth}: the initialization (eps^(1/L) = {args.init_scale ** (1 / depth):.3g}) is "
                        f"already past {args.fraction} of a feature's asymptote; lower --init-scale")
            lr = min(args.courant / max_rate(objective, args.lambdas, args.rhos, depth, args.init_scale),
                     float(ode_t.min()) / args.steps_before)
            steps = math.ceil(args.horizon * float(ode_t.max()) / lr)
            times, mags, seconds = train(objective, depth, args, lr, steps)
            final = asymptote(objective, rho, depth)
            meas_t = critical_time(times, mags, args.fraction, final)
            rel = np.abs(meas_t - ode_t) / ode_t
            measured_orders[objective][depth] = learning_order(meas_t)
            ode_orders[objective][depth] = learning_order(ode_t)
            runs.append({
                "objective": objective, "depth": depth, "lr": lr, "steps": steps, "seconds": round(seconds, 2),
                "critical_time": meas_t.tolist(), "ode_critical_time": ode_t.tolist(),
                "relative_error": rel.tolist(), "order": measured_orders[objective][depth],
                "ode_order": ode_orders[objective][depth],
                "magnitude_over_asymptote_at_end": (mags[-1] / final).tolist(),
            })

    # claims
    mae_ok = {d: o == by_lambda for d, o in measured_orders["mae"].items()}
    jepa_pair = {d: pair_order(o, pair) for d, o in measured_orders["jepa"].items()}
    ode_pair = {d: pair_order(o, pair) for d, o in ode_orders["jepa"].items()}
    late = [pair[1], pair[0]]
    inv_meas, inv_ode = inversion_depth(jepa_pair, late), inversion_depth(ode_pair, late)
    shallow = min(args.depths)
    inverts = (jepa_pair[shallow] == [pair[0], pair[1]] and inv_meas is not None and inv_meas == inv_ode)
    past = [d for d in args.depths if inv_meas is not None and d >= inv_meas]
    follows_rho = bool(past) and all(measured_orders["jepa"][d] == by_rho for d in past)
    max_err = max(max(r["relative_error"]) for r in runs)
    out = {
        "setting": {"lambdas": args.lambdas, "rhos": args.rhos, "sigma_x2": (lam / rho).tolist(),
                    "init_scale": args.init_scale, "fraction": args.fraction, "depths": args.depths,
                    "init": "orthogonal", "data": "exact covariance, random orthogonal basis, full-batch GD",
                    "pair": {"high_lambda_low_rho": pair[0], "low_lambda_high_rho": pair[1]}},
        "runs": runs,
        "claims": {
            "mae_order_follows_lambda": {"lambda_order": by_lambda,
                                         "order_by_depth": measured_orders["mae"], "holds": all(mae_ok.values())},
            "jepa_pair_inverts_past_depth": {
                "pair_order_by_depth": jepa_pair, "ode_pair_order_by_depth": ode_pair,
                "inversion_depth": inv_meas, "ode_inversion_depth": inv_ode, "holds": bool(inverts)},
            "jepa_order_follows_rho_past_depth": {"rho_order": by_rho, "order_by_depth": measured_orders["jepa"],
                                                  "depths": past, "holds": follows_rho},
            "critical_times_match_ode": {"max_relative_error": max_err, "tolerance": args.tolerance,
                                         "holds": bool(max_err <= args.tolerance)},
        },
    }
    if args.sgd_batch:
        depth = max(d for d in args.depths if inv_meas is None or d >= inv_meas)
        run = next(r for r in runs if r["objective"] == "jepa" and r["depth"] == depth)
        times, mags, seconds = train("jepa", depth, args, run["lr"], run["steps"], batch_size=args.sgd_batch,
                                     exact=False, num_samples=4096)
        meas_t = critical_time(times, mags, args.fraction, asymptote("jepa", rho, depth))
        ode_t = np.asarray(run["ode_critical_time"])
        out["sgd_check"] = {"objective": "jepa", "depth": depth, "batch_size": args.sgd_batch,
                            "num_samples": 4096, "exact_covariance": False, "lr": run["lr"], "steps": run["steps"],
                            "seconds": round(seconds, 2), "critical_time": meas_t.tolist(),
                            "relative_error": (np.abs(meas_t - ode_t) / ode_t).tolist(),
                            "order": learning_order(meas_t),
                            "note": "minibatch noise leaves some cross-talk between the features; once the "
                                    "high-gain feature is learned, the norm |Wbar u_i| of a low-gain feature picks "
                                    "it up, so that feature's measured critical time can come early"}
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    if not args.quick:
        write_result(out, args)
    print(json.dumps(out, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def write_result(out: dict, args: argparse.Namespace, directory: Path | None = None) -> Path:
    """benchmarks/results/linear_theory.json (common.py schema): the four claims, and the critical times per
    objective and depth as a table in the notes. No probes: the claims are measured directly, on one seed (exact
    covariances make the dynamics deterministic up to the random basis)."""
    c = out["claims"]
    claims = [
        claim_entry("MAE learns the features in order of lambda at every depth (depths where it does)",
                    sum(o == c["mae_order_follows_lambda"]["lambda_order"]
                        for o in c["mae_order_follows_lambda"]["order_by_depth"].values()),
                    f"= {len(args.depths)} (every depth)", c["mae_order_follows_lambda"]["holds"]),
        claim_entry("JEPA's order of the (high lambda, low rho) / (low lambda, high rho) pair inverts past a depth, "
                    "the ODE's (measured inversion depth)",
                    c["jepa_pair_inverts_past_depth"]["inversion_depth"] or 0,
                    f"= the ODE's ({c['jepa_pair_inverts_past_depth']['ode_inversion_depth']})",
                    c["jepa_pair_inverts_past_depth"]["holds"]),
        claim_entry("past that depth, JEPA learns in order of rho (depths where it does)",
                    len(c["jepa_order_follows_rho_past_depth"]["depths"]) if c["jepa_order_follows_rho_past_depth"][
                        "holds"] else 0, f"= {len(c['jepa_order_follows_rho_past_depth']['depths'])} (every depth "
                                         "past the inversion)", c["jepa_order_follows_rho_past_depth"]["holds"]),
        claim_entry("every measured critical time matches the ODE's (max relative error)",
                    c["critical_times_match_ode"]["max_relative_error"], f"<= {args.tolerance:g}",
                    c["critical_times_match_ode"]["holds"]),
    ]
    rows = ["| objective | depth | measured t* per feature | ODE t* per feature | max error | learning order |",
            "| --- | --- | --- | --- | --- | --- |"]
    for r in out["runs"]:
        rows.append(f"| {r['objective'].upper()} | {r['depth']} | {', '.join(f'{t:.1f}' for t in r['critical_time'])} "
                    f"| {', '.join(f'{t:.1f}' for t in r['ode_critical_time'])} | "
                    f"{100 * max(r['relative_error']):.1f} % | {' then '.join(map(str, r['order']))} |")
    notes = (f"Two features with lambda {args.lambdas} and rho {args.rhos}, init scale {args.init_scale:g}, exact "
             "covariances in a random basis, full-batch gradient descent through the Lightning Trainer; critical time "
             f"t* = the continuous time lr x step at which a feature's encoder magnitude reaches {args.fraction:g} of "
             "its asymptote, against the per-feature ODE integrated numerically:\n\n" + "\n".join(rows))
    if "sgd_check" in out:
        sgd = out["sgd_check"]
        notes += (f"\n\nNot claimed: with SGD (batch {sgd['batch_size']}, {sgd['num_samples']} sampled rows) the "
                  f"depth-{sgd['depth']} JEPA run's relative errors are "
                  f"{', '.join(f'{100 * e:.0f} %' for e in sgd['relative_error'])} per feature: {sgd['note']}.")
    config = {k: v for k, v in vars(args).items() if k != "quick"}
    setting = (f"deep linear encoders, depths {', '.join(map(str, args.depths))}, JEPA and MAE objectives, "
               "exact covariances")
    return save_result("linear_theory", "deep-linear JEPA vs MAE", "benchmarks/fidelity/linear_theory.py", setting,
                       config, [args.seed], out["seconds"], [], claims, notes=notes, directory=directory)


if __name__ == "__main__":
    main()
