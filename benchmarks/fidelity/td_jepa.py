"""TD-JEPA's claims at small scale: zero-shot RL on walker against forward-backward (FB) representations, per-task
offline TD3 and a random policy; and the linear-MDP successor-feature analysis.

    python benchmarks/fidelity/td_jepa.py [--seeds 0 1 2] [--jobs 2]    # both claims (~20 min on 2 CPU cores)
    python benchmarks/fidelity/td_jepa.py --quick                       # smoke run (~1 min)
    python benchmarks/fidelity/td_jepa.py --skip-walker                 # claim 1 only (~1 min)
    python benchmarks/fidelity/td_jepa.py --rnd 100 --seeds 0 1 2 3 4   # on RND exploration data (below)

Claim 2 (zero-shot RL on walker; benchmarks/results/td_jepa_walker.json). On the embedded reward-free walker
dataset (``OfflineRLDataModule(embedded="walker")``: its train split, 45 episodes, 45k transitions), for each seed
and with the same transitions, the same sequence of ``--batch-size`` minibatches and ``--steps`` gradient steps:

* ``pretrained``: TD-JEPA (asymmetric; phi a linear map to ``--phi-dim``, psi a 2-layer MLP to ``--psi-dim``,
  predictors and actor of width ``--hidden``), zero-shot: for stand, walk and run, the rewards of
  ``--infer-samples`` training transitions are relabeled from their next physics states, z is inferred by least
  squares on psi, and pi_z is rolled out;
* ``fb``: forward-backward representations (``jepa_lightning.methods.fb.FB``, the paper's main zero-shot
  baseline) with the same sizes in the same roles (left encoder = phi, B = psi, F of width ``--hidden``),
  orthonormality weight ``--fb-ortho-coef`` and the reference's inference ``z = sphere(sum_i r_i B(s'_i))``;
* ``td3``: per-task offline TD3 (or TD3+BC with ``--td3-bc-alpha``) trained on the task's relabeled reward, same
  actor noise, batch size and steps (it sees the reward in training: a reference, not a zero-shot method);
* ``random_init``: a uniformly random policy.

With ``--rnd N`` the same arms train on N episodes of RND exploration data instead (the kind of data the paper
uses, ExORL's RND datasets, at a far smaller size): ``jepa-lightning collect --policy rnd --seed 0``
(``jepa_lightning/rl/rnd.py``: an online TD3 agent maximising the RND bonus, 5000 random warm-up steps), collected
once into runs/bench_td_jepa/walker_rnd (100 episodes: ~20 min on one thread), 90 % of the episodes for training;
the result is benchmarks/results/td_jepa_walker_rnd.json. Side by side with the official code (marbaga/
td_jepa_public, trained by its own update on these minibatches): benchmarks/fidelity/td_jepa_parity.py; it agrees
with ours on every task, with the same wide spread on walk.

Returns (probe per task: stand, walk, run) are over ``--episodes`` episodes of ``--time-limit`` steps (episode i
reset with ``--eval-seed`` + i). Claims, per task: TD-JEPA's return is above twice the random policy's (the ratio
of means above 2 and the margin over twice random above twice the combined std over seeds); TD-JEPA vs FB and vs
TD3, judged by twice the combined std. Each (seed, run) is cached as JSON under runs/bench_td_jepa (reruns resume;
--fresh recomputes) and runs in its own process (``--jobs`` at a time, one thread each): TD-JEPA (with the random
policy's rollouts), FB, and one TD3 per task.

Claim 1 (linear MDP, the paper's analysis of the symmetric linear case; benchmarks/results/td_jepa_linear.json,
claims only). A random MDP with ``n`` one-hot states, ``A`` actions (transition rows Dirichlet(0.5)) and a fixed
random policy pi (rows Dirichlet(1)). Symmetric TD-JEPA with a linear encoder ``phi(s) = sphere(W e_s)``
(``StateEncoder(n, d, hidden_layers=0)``, the reference's phi for DMC proprio; on one-hot states it is the linear
map ``Phi = [phi(s_1) .. phi(s_n)]``, d x n) and a linear action-conditioned predictor ``T(phi, a) = T_a phi`` (no
z: the policy is fixed), trained from random initialization by Adam on the method's own loss terms
(``td_target``, ``td_latent_loss``, ``orthonormality_loss`` of ``jepa_lightning.methods.td_jepa``) with EMA
targets. The data are every (s, a) pair with uniform weight, and the TD target is its expectation over
s' ~ P_a(s, .) and a' ~ pi(s') (the expected loss, whose gradient is the mean of the sampled TD gradients), so the
run is deterministic. The fixed point of the TD latent loss is ``T_a Phi = Phi Psi_a^T`` with the closed-form
successor features ``Psi_a = P_a (I - gamma P_pi)^-1`` (row s: discounted occupancy of the states visited from the
state after (s, a), the TD-JEPA target ``sum_{t>=0} gamma^t phi(s_{t+1})`` written in the basis Phi). Compared,
with d = n (Phi invertible; the representation's change of basis removed):
``rel_err = max_a ||Phi^-1 T_a Phi - Psi_a^T||_F / ||Psi_a^T||_F``  (claim: below ``--sf-tolerance``, 1e-3),
and likewise for the policy-averaged map ``sum_a pi(a|s) ...`` against ``(I - gamma P_pi)^-1 - I`` over gamma
(which is ``P_pi (I - gamma P_pi)^-1``). A sampled-minibatch variant (real TD: s, a uniform, s' and a' sampled)
is reported in the notes with the same metric (its error is limited by the gradient noise; informative only).

Writes both results (benchmarks/fidelity/common.py schema; ``--quick``: ``*_quick.json`` in runs/bench_td_jepa)
and prints them as a JSON list (walker first).

Time at the defaults (3 seeds, 6000 steps, 5 episodes of 1000 steps, ``--jobs 2``), from per-part timings on the
2-core machine with one thread per process, measured while it also ran two other benchmarks (so on the high
side): a step takes 44 ms for TD-JEPA, 31 ms for FB and 9 ms for TD3, a 1000-step rollout 0.5-0.9 s, relabeling
all 45k transitions 1.6 s; per seed TD-JEPA's run ~4.7 min, FB's ~3.2 min, each TD3 ~1.1 min, ~34 min of
single-core work in all, ~18 min with ``--jobs 2`` (the quick run: 48 s); claim 1 under 1 min.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import cached, claim_entry, gain_claim, in_parallel, probe_entry, run_worker, save_result

from jepa_lightning.eval.rankme import effective_rank
from jepa_lightning.masks import step_generator
from jepa_lightning.methods.fb import FB
from jepa_lightning.methods.td_jepa import TDJEPA, orthonormality_loss, td_latent_loss, td_target
from jepa_lightning.nn.rl import MLP, StateEncoder
from jepa_lightning.rl.td3 import TD3Networks, td3_update
from jepa_lightning.targets import ema_update

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "runs" / "bench_td_jepa"
AGENTS = ("td_jepa", "fb")  # trained once per seed, evaluated zero-shot on every task


# ------------------------------------------------------------------------------------------ claim 1
def random_mdp(n: int, actions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Transitions ``P [A, n, n]`` (rows Dirichlet(0.5)) and a fixed policy ``pi [n, A]`` (rows Dirichlet(1))."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(n, 0.5), size=(actions, n)), rng.dirichlet(np.ones(actions), size=n)


def closed_form_sf(P: np.ndarray, pi: np.ndarray, gamma: float) -> np.ndarray:
    """``Psi_a = P_a (I - gamma P_pi)^-1`` for each action, ``[A, n, n]``."""
    n = P.shape[1]
    p_pi = np.einsum("sa,ast->st", pi, P)
    return P @ np.linalg.inv(np.eye(n) - gamma * p_pi)


def _categorical(probs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One draw per row of ``probs [B, K]`` (inverse CDF)."""
    u = torch.rand(probs.shape[0], 1, generator=g)
    return torch.searchsorted(probs.cumsum(1), u).squeeze(1).clamp_max(probs.shape[1] - 1)


def linear_sf_experiment(n: int = 20, actions: int = 3, gamma: float = 0.9, steps: int = 6000, lr: float = 1e-2,
                         ema: float = 0.9, ortho_coef: float = 0.1, seed: int = 0, sampled: bool = False,
                         batch_size: int = 512) -> dict:
    """Symmetric linear TD-JEPA on a random MDP (module docstring, claim 1); returns the errors."""
    P_np, pi_np = random_mdp(n, actions, seed)
    sf = torch.tensor(closed_form_sf(P_np, pi_np, gamma))
    P, pi = torch.tensor(P_np, dtype=torch.float32), torch.tensor(pi_np, dtype=torch.float32)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    d = n
    encoder = StateEncoder(n, d, hidden_layers=0)
    T = torch.nn.Parameter(0.1 * torch.randn(actions, d, d, generator=g))
    enc_bar = StateEncoder(n, d, hidden_layers=0).requires_grad_(False)
    enc_bar.load_state_dict(encoder.state_dict())
    T_bar = T.detach().clone()
    opt = torch.optim.Adam([*encoder.parameters(), T], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t / steps, 1.0))))
    eye = torch.eye(n)
    s_all = torch.arange(n).repeat_interleave(actions)  # every (s, a) pair
    a_all = torch.arange(actions).repeat(n)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.no_grad():
            phi_bar = enc_bar(eye)  # [n, d], row s = phi_bar(s)
            # value of the target predictor at s' averaged over a' ~ pi(s'): sum_a' pi(a'|s') T_bar_a' phi_bar(s')
            nxt_pred = torch.einsum("sa,aij,sj->si", pi, T_bar, phi_bar)  # [n, d]
        if sampled:
            s = torch.randint(n, (batch_size,), generator=g)
            a = torch.randint(actions, (batch_size,), generator=g)
            s2 = _categorical(P[a, s], g)
            a2 = _categorical(pi[s2], g)
            with torch.no_grad():
                y = td_target(phi_bar[s2], torch.einsum("bij,bj->bi", T_bar[a2], phi_bar[s2]).unsqueeze(0),
                              torch.full((batch_size,), gamma))
        else:
            s, a = s_all, a_all
            with torch.no_grad():  # expectation over s' ~ P_a(s, .) of the target (linear in the next state)
                rows = P[a, s]  # [n A, n]
                y = td_target(rows @ phi_bar, (rows @ nxt_pred).unsqueeze(0), torch.full((len(s),), gamma))
        phi = encoder(eye)  # online phi of every state
        pred = torch.einsum("bij,bj->bi", T[a], phi[s]).unsqueeze(0)  # [1, B, d] (an ensemble of one)
        loss = td_latent_loss(pred, y) + ortho_coef * orthonormality_loss(phi)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            ema_update(enc_bar, encoder, ema)
            T_bar.lerp_(T.detach(), 1 - ema)
    with torch.no_grad():
        Phi = encoder(eye).T.double()  # d x n, column s = phi(s)
        learned = torch.linalg.solve(Phi, T.double() @ Phi)  # Phi^-1 T_a Phi, [A, n, n]
        target = sf.transpose(1, 2)
        err = ((learned - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)).max()
        pol_learned = torch.einsum("sa,ats->ts", pi.double(), learned)  # column s: sum_a pi(a|s) learned_a[:, s]
        pol_target = torch.einsum("sa,ats->ts", pi.double(), target)
        pol_err = (pol_learned - pol_target).norm() / pol_target.norm()
        cond = torch.linalg.cond(Phi)
    return {"n_states": n, "actions": actions, "gamma": gamma, "steps": steps, "sampled": sampled,
            "rel_err_max_over_actions": float(err), "rel_err_policy_averaged": float(pol_err),
            "phi_condition_number": float(cond), "final_loss": float(loss.detach()), "seconds": round(time.perf_counter() - start, 2)}


def claim_linear(args: argparse.Namespace) -> dict:
    runs = [linear_sf_experiment(n=args.n_states, gamma=args.gamma, steps=args.sf_steps, seed=s)
            for s in args.seeds]
    sampled = [linear_sf_experiment(n=args.n_states, gamma=args.gamma, steps=args.sf_steps, seed=s, sampled=True)
               for s in args.seeds[:1]]
    return {"expected_loss": runs, "sampled_minibatch": sampled}


def write_linear(out: dict, args: argparse.Namespace) -> Path:
    """benchmarks/results/td_jepa_linear.json: claim 1 (claims only; the runs in the notes)."""
    runs, sampled = out["expected_loss"], out["sampled_minibatch"][0]
    worst = max(r["rel_err_max_over_actions"] for r in runs)
    worst_pol = max(r["rel_err_policy_averaged"] for r in runs)
    claims = [
        claim_entry("linear symmetric TD-JEPA's predictor converges to the closed-form successor features "
                    "P_a (I - gamma P_pi)^-1 of every action (worst relative error over actions and seeds)", worst,
                    f"< {args.sf_tolerance:g}", bool(worst < args.sf_tolerance)),
        claim_entry("linear symmetric TD-JEPA's policy-averaged map converges to P_pi (I - gamma P_pi)^-1 (worst "
                    "relative error over seeds)",
                    worst_pol, f"< {args.sf_tolerance:g}", bool(worst_pol < args.sf_tolerance))]
    rows = ["| seed | rel. error (worst action) | rel. error (policy-averaged) | cond(Phi) | seconds |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {s} | {r['rel_err_max_over_actions']:.2e} | {r['rel_err_policy_averaged']:.2e} | "
             f"{r['phi_condition_number']:.2f} | {r['seconds']:.1f} |" for s, r in zip(args.seeds, runs)]
    notes = ("Expected-loss runs (every (s, a) pair, the TD target's expectation over s' and a'), d = n, the "
             "representation's change of basis removed (Phi^-1 T_a Phi):\n\n" + "\n".join(rows) +
             f"\n\nNot claimed: the sampled-minibatch variant (real TD: s, a uniform, s' and a' sampled, batch 512) "
             f"reaches a relative error of {sampled['rel_err_max_over_actions']:.3f} (worst action; seed "
             f"{args.seeds[0]}): its error is limited by the gradient noise.")
    config = {k: getattr(args, k) for k in ("n_states", "gamma", "sf_steps", "sf_tolerance")} | {"actions": 3}
    setting = (f"random MDP, {args.n_states} one-hot states, 3 actions, gamma {args.gamma:g}, fixed random policy; "
               f"linear symmetric TD-JEPA, {args.sf_steps} Adam steps on the expected loss")
    return save_result("td_jepa_linear" + ("_quick" if args.quick else ""), "TD-JEPA", "benchmarks/fidelity/td_jepa.py",
                       setting, config, args.seeds, sum(r["seconds"] for r in runs) + sampled["seconds"], [], claims,
                       notes=notes, directory=CACHE if args.quick else None)


# ------------------------------------------------------------------------------------------ claim 2
def walker_data(path: str | None, max_episodes: int | None) -> tuple[object, dict[str, torch.Tensor]]:
    """The train split of the walker dataset (embedded unless ``path``, a ``TransitionDataset``) and all its
    transitions."""
    from datamodules.offline_rl import OfflineRLDataModule

    dm = OfflineRLDataModule(path=path, embedded=None if path else "walker", max_episodes=max_episodes,
                             batch_size=256)
    dm.setup("fit")
    ds = dm.train_dataset
    return ds, ds.__getitems__(list(range(len(ds))))


def build_agent(method: str, obs_dim: int, act_dim: int, args: argparse.Namespace) -> TDJEPA | FB:
    """TD-JEPA (asymmetric) or FB with the same sizes in the same roles (phi = FB's left encoder, psi = its B)."""
    phi = StateEncoder(obs_dim, args.phi_dim, 256, hidden_layers=0)
    psi = StateEncoder(obs_dim, args.psi_dim, 256, hidden_layers=2)
    ema = (args.ema, args.ema)
    if method == "td_jepa":
        return TDJEPA(phi, act_dim, psi, predictor_hidden_dim=args.hidden, actor_hidden_dim=args.hidden,
                      discount=args.discount, lr_phi=args.lr, lr_psi=args.lr, lr_predictor=args.lr, lr_actor=args.lr,
                      encoder_ema=ema, predictor_ema=ema)
    return FB(phi, act_dim, psi, forward_hidden_dim=args.hidden, actor_hidden_dim=args.hidden, discount=args.discount,
              lr_f=args.lr, lr_b=args.lr, lr_actor=args.lr, forward_ema=ema, backward_ema=ema,
              ortho_coef=args.fb_ortho_coef)


def train_agent(method: str, data: dict[str, torch.Tensor], args: argparse.Namespace,
                seed: int) -> tuple[TDJEPA | FB, dict, dict]:
    """TD-JEPA or FB on the reward-free transitions: the method's ``training_step`` without the Trainer (same
    objective, optimizer and EMA updates); the minibatches depend on ``seed`` only, so both see the same ones.
    Returns the model, its last step's loss terms and the effective-rank curves of phi and psi."""
    torch.manual_seed(seed)
    model = build_agent(method, data["obs"].shape[1], data["action"].shape[1], args)
    opt = model.configure_optimizers()["optimizer"]
    n, g = len(data["obs"]), torch.Generator().manual_seed(seed)
    every = max(args.steps // 30, 1)
    curves: dict[str, list] = {"train/phi_rank": [], "train/psi_rank": []}
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(n, (args.batch_size,), generator=g)
        out = model.objective({k: data[k][idx] for k in ("obs", "action", "next_obs", "terminal")},
                              step_generator(seed, 0, step))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        model.update_targets()
        if step % every == 0 or step == args.steps - 1:
            for name in ("phi", "psi"):
                curves[f"train/{name}_rank"].append([step + 1, round(float(effective_rank(out[name])), 3)])
    log = {k: round(float(out[k].detach()), 4) for k in model.loss_terms if k in out}
    return model.eval(), log | {"seconds": round(time.perf_counter() - start, 1)}, curves


def train_td3(data: dict[str, torch.Tensor], reward: torch.Tensor, args: argparse.Namespace,
              seed: int) -> tuple[torch.nn.Module, float]:
    """Offline TD3 (Fujimoto et al. 2018: twin critics, clipped double Q, target-policy smoothing, delayed actor
    updates, Polyak targets), or TD3+BC (Fujimoto & Gu 2021) with ``--td3-bc-alpha > 0``, on the transitions
    with the task's relabeled reward; same batch size, number of steps, discount and actor noise as TD-JEPA."""
    torch.manual_seed(seed)
    obs_dim, act_dim = data["obs"].shape[1], data["action"].shape[1]
    critic = MLP(obs_dim + act_dim, 1, args.hidden, 2, ensemble=2)
    actor = MLP(obs_dim, act_dim, args.hidden, 2)
    nets = TD3Networks(actor, critic, copy.deepcopy(actor).requires_grad_(False),
                       copy.deepcopy(critic).requires_grad_(False), torch.optim.Adam(actor.parameters(), lr=args.td3_lr),
                       torch.optim.Adam(critic.parameters(), lr=args.td3_lr))
    n, g = len(data["obs"]), torch.Generator().manual_seed(seed)
    not_done = 1.0 - data["terminal"].float()
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(n, (args.batch_size,), generator=g)
        td3_update(nets, data["obs"][idx], data["action"][idx], reward[idx], data["next_obs"][idx], not_done[idx], g,
                   discount=args.discount, update_actor=step % 2 == 0, bc_alpha=args.td3_bc_alpha)
    return actor.eval(), time.perf_counter() - start


def _rollout(task: str, policy, args: argparse.Namespace) -> dict:
    from jepa_lightning.rl.envs import make_env
    from jepa_lightning.rl.rollout import rollout

    env = make_env("walker", task, seed=args.eval_seed, time_limit=args.time_limit)
    out = rollout(env, policy, episodes=args.episodes, seed=args.eval_seed)
    return {"mean": round(out["mean_return"], 2), "returns": [round(r, 2) for r in out["returns"]]}


def run(seed: int, method: str, args: argparse.Namespace) -> dict:
    """One cached run: an agent (``td_jepa``, ``fb``) trained once and evaluated zero-shot on every task (TD-JEPA's
    run also rolls out the random policy), or ``td3_<task>`` trained and evaluated on its task."""
    from jepa_lightning.eval.zero_shot import sample_transitions
    from jepa_lightning.rl.relabel import relabel

    torch.set_num_threads(1)
    start = time.perf_counter()
    dataset, data = walker_data(args.data, args.max_episodes)
    out: dict = {"seed": seed, "method": method, "transitions": len(data["obs"]), "returns": {}}
    if method in AGENTS:
        model, out["train"], out["curves"] = train_agent(method, data, args, seed)
        sub = sample_transitions(dataset, args.infer_samples, seed)
        rng = np.random.default_rng(seed)
        act_dim = data["action"].shape[1]
        for task in args.tasks:
            z = model.infer_z(sub["next_obs"], torch.as_tensor(relabel("walker", task, sub["next_physics"].numpy())))
            out["returns"][task] = _rollout(task, model.policy(z), args)
            if method == "td_jepa":
                out.setdefault("random", {})[task] = _rollout(task, lambda obs: rng.uniform(-1, 1, act_dim), args)
    else:
        task = method.removeprefix("td3_")
        reward = torch.as_tensor(relabel("walker", task, data["next_physics"].numpy()))
        actor, seconds = train_td3(data, reward, args, seed)

        def policy(obs):
            with torch.no_grad():
                return torch.tanh(actor(torch.as_tensor(obs).float().unsqueeze(0)))[0].numpy()

        out["train"] = {"seconds": round(seconds, 1)}
        out["returns"][task] = _rollout(task, policy, args)
    return out | {"seconds": round(time.perf_counter() - start, 1)}


WALKER_ARGS = ("data", "max_episodes", "steps", "batch_size", "hidden", "phi_dim", "psi_dim", "lr", "td3_lr",
               "td3_bc_alpha", "ema", "discount", "fb_ortho_coef", "infer_samples", "episodes", "time_limit",
               "eval_seed")


def worker_args(args: argparse.Namespace) -> list[str]:
    """The walker setting as the worker's command line (``--quick`` adds nothing: it is already resolved)."""
    out = ["--tasks", *args.tasks]
    for key in WALKER_ARGS:
        value = getattr(args, key)
        if value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def cache_path(seed: int, method: str, args: argparse.Namespace) -> Path:
    digest = hashlib.sha1(" ".join(worker_args(args)).encode()).hexdigest()[:10]
    return CACHE / f"{method}_s{seed}_{args.steps}st_{digest}{'_quick' if args.quick else ''}.json"


def data_coverage(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per task, the mean relabeled reward of the training transitions and the share above 0.5: how much of what
    the task rewards the data show."""
    from jepa_lightning.rl.relabel import relabel

    _, data = walker_data(args.data, args.max_episodes)
    rewards = {t: relabel("walker", t, data["next_physics"].numpy()) for t in args.tasks}
    return {t: {"mean_reward": round(float(r.mean()), 4), "share_above_half": round(float((r > 0.5).mean()), 4)}
            for t, r in rewards.items()}


def twice_random_claim(task: str, td_jepa: list[float], random: list[float]) -> dict:
    """TD-JEPA's return above twice the random policy's: the ratio of means above 2 and the margin
    ``TD-JEPA - 2 x random`` above twice the combined std over seeds."""
    margin = gain_claim("", td_jepa, [2 * r for r in random])
    ratio = statistics.mean(td_jepa) / max(statistics.mean(random), 1e-9)
    return claim_entry(f"TD-JEPA's zero-shot return on {task} is above twice the random policy's (ratio of means)",
                       ratio, f"> 2, and TD-JEPA - 2 x random {margin['criterion']}", bool(ratio > 2 and margin["holds"]))


def walker_setting(args: argparse.Namespace, transitions: int) -> str:
    """The walker setting in words: data, steps, batch and sizes."""
    data = "RND exploration data" if args.rnd else "embedded reward-free data"
    return (f"walker, {data} ({transitions} transitions), {args.steps} steps of batch {args.batch_size}, phi "
            f"{args.phi_dim} / psi {args.psi_dim} dims, width {args.hidden}")


def write_walker(runs: list[dict], args: argparse.Namespace, seconds: float) -> Path:
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["seed"], r["method"]): r for r in runs}

    def scores(arm: str, task: str) -> list[float]:
        if arm == "random_init":
            return [by[(s, "td_jepa")]["random"][task]["mean"] for s in seeds]
        method = {"pretrained": "td_jepa", "fb": "fb", "td3": f"td3_{task}"}[arm]
        return [by[(s, method)]["returns"][task]["mean"] for s in seeds]

    arms = ("random_init", "pretrained", "fb", "td3")
    metric = f"return ({args.episodes} episodes of {args.time_limit} steps)"
    probes = [probe_entry(task, metric, {a: scores(a, task) for a in arms}) for task in args.tasks]
    claims = [twice_random_claim(t, scores("pretrained", t), scores("random_init", t)) for t in args.tasks]
    claims += [gain_claim(f"TD-JEPA's zero-shot return on {t} is above FB's (same data, steps and batch)",
                          scores("pretrained", t), scores("fb", t)) for t in args.tasks]
    claims += [gain_claim(f"TD-JEPA's zero-shot return on {t} is above per-task offline TD3's (which trains on the "
                          "task's reward)", scores("pretrained", t), scores("td3", t)) for t in args.tasks]
    monitors = {f"{'pretrained' if m == 'td_jepa' else m}_s{s}": by[(s, m)]["curves"] for s in seeds for m in AGENTS}
    config = {k: getattr(args, k) for k in WALKER_ARGS} | {
        "tasks": args.tasks, "transitions": runs[0]["transitions"], "td3": "TD3+BC" if args.td3_bc_alpha > 0 else "TD3",
        "train_seconds": {m: [by[(s, m)]["train"]["seconds"] for s in seeds] for m in AGENTS},
        "final_loss_terms": {m: [by[(s, m)]["train"] for s in seeds] for m in AGENTS}}
    config["data_coverage"] = coverage = data_coverage(args)
    fb_ratio = {t: statistics.mean(scores("fb", t)) / max(statistics.mean(scores("random_init", t)), 1e-9)
                for t in args.tasks}
    setting = (f"{walker_setting(args, runs[0]['transitions'])}; zero-shot z from {args.infer_samples} relabeled "
               "transitions")
    notes = ("Arms: pretrained = TD-JEPA zero-shot (z by least squares on psi); fb = forward-backward "
             "representations (jepa_lightning.methods.fb, same data, minibatches, steps, sizes and optimizer; "
             f"orthonormality weight {args.fb_ortho_coef:g}; z = sphere(sum_i r_i B(s'_i))); td3 = per-task offline "
             f"{config['td3']} trained on the task's relabeled reward (not zero-shot: a reference); random_init = a "
             "uniformly random policy (not the untrained network). FB's return over the random policy's: "
             + ", ".join(f"{t} {r:.2f}x" for t, r in fb_ratio.items()) + ". Monitors: effective rank of phi "
             "(FB: the left encoder) and psi (FB: B) on the training minibatch. What the data show of each task "
             "(mean relabeled reward of the training transitions, share above 0.5): "
             + ", ".join(f"{t} {c['mean_reward']:.3f}, {100 * c['share_above_half']:.1f} %" for t, c in coverage.items())
             + ".")
    name = "td_jepa_walker" + ("_rnd" if args.rnd else "") + ("_quick" if args.quick else "")
    command = "benchmarks/fidelity/td_jepa.py" + (f" --rnd {args.rnd} --seeds {' '.join(map(str, seeds))}"
                                                   if args.rnd else "")
    return save_result(name, "TD-JEPA", command,
                       setting, config, seeds, seconds, probes, claims, monitors=monitors, notes=notes,
                       directory=CACHE if args.quick else None)


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line, with `--quick` applied (td_jepa_parity.py builds the same settings)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: one seed, small everything")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="walker runs in parallel, one thread each")
    p.add_argument("--fresh", action="store_true", help="recompute cached runs")
    p.add_argument("--n-states", type=int, default=20)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--sf-steps", type=int, default=6000)
    p.add_argument("--sf-tolerance", type=float, default=1e-3)
    p.add_argument("--skip-walker", action="store_true")
    p.add_argument("--data", default=None, help="folder of walker episodes (default: the embedded dataset)")
    p.add_argument("--rnd", type=int, default=0, metavar="EPISODES",
                   help="train on this many episodes of RND exploration data instead (collected once into "
                        "runs/bench_td_jepa/walker_rnd by `jepa-lightning collect --policy rnd --seed 0`, resumable; "
                        "writes td_jepa_walker_rnd.json)")
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--tasks", nargs="+", default=["stand", "walk", "run"])
    p.add_argument("--steps", type=int, default=6000, help="gradient steps of TD-JEPA, FB and each TD3")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--phi-dim", type=int, default=64)
    p.add_argument("--psi-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--td3-lr", type=float, default=3e-4)
    p.add_argument("--td3-bc-alpha", type=float, default=0.0, help="> 0: TD3+BC with this alpha (paper: 2.5)")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--discount", type=float, default=0.98)
    p.add_argument("--fb-ortho-coef", type=float, default=1.0, help="FB's orthonormality weight (reference: 1)")
    p.add_argument("--infer-samples", type=int, default=10_000)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--time-limit", type=int, default=1000)
    p.add_argument("--eval-seed", type=int, default=100)
    p.add_argument("--one", nargs=2, metavar=("SEED", "RUN"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.sf_steps = args.seeds[:1], min(args.sf_steps, 1500)
        args.steps, args.episodes, args.time_limit = min(args.steps, 50), 1, 50
        args.hidden, args.infer_samples, args.max_episodes = 64, 1000, args.max_episodes or 5
    return args


def rnd_data(args: argparse.Namespace) -> None:
    """With `--rnd N`: the RND exploration data, collected once into runs/bench_td_jepa/walker_rnd (a rerun resumes
    it or finds it complete), named as the data of `args`."""
    from jepa_lightning.rl.collect import collect

    args.data = str(CACHE / "walker_rnd")
    args.max_episodes = args.max_episodes or args.rnd
    collect(args.data, "walker", policy="rnd", episodes=args.rnd, seed=0)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.one:  # a worker process: one run, cached
        seed, method = int(args.one[0]), args.one[1]
        cached(cache_path(seed, method, args), run, seed, method, args, fresh=True)
        return []
    t0 = time.perf_counter()
    paths = []
    if not args.skip_walker:
        if args.rnd:  # the exploration data, collected once (a rerun resumes it or finds it complete)
            rnd_data(args)
        walker_data(args.data, args.max_episodes)  # generates the embedded dataset once, before the workers
        jobs = [(s, m) for m in (*AGENTS, *(f"td3_{t}" for t in args.tasks)) for s in args.seeds]  # longest first
        wargs = worker_args(args) + (["--quick"] if args.quick else [])
        runs = in_parallel(lambda s, m: run_worker(cache_path(s, m, args), __file__, ["--one", str(s), m, *wargs],
                                                   f"{m} seed {s}", args.fresh), jobs, args.jobs)
        seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in runs) / args.jobs)
        paths.append(write_walker(runs, args, seconds))
    tag = f"{args.n_states}n_{args.gamma:g}g_{args.sf_steps}st_s{'-'.join(map(str, args.seeds))}"
    linear = cached(CACHE / f"linear_{tag}.json", claim_linear, args, fresh=args.fresh)
    paths.append(write_linear(linear, args))
    results = [json.loads(path.read_text()) for path in paths]
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
