"""TD-JEPA's claims at small scale.

    python benchmarks/fidelity/td_jepa.py                 # both claims (walker: ~10 min on 2 CPU cores)
    python benchmarks/fidelity/td_jepa.py --quick         # smoke run (< 1 min)
    python benchmarks/fidelity/td_jepa.py --skip-walker   # claim 1 only

Claim 1 (linear MDP, the paper's analysis of the symmetric linear case). A random MDP with ``n`` one-hot states,
``A`` actions (transition rows Dirichlet(0.5)) and a fixed random policy pi (rows Dirichlet(1)). Symmetric
TD-JEPA with a linear encoder ``phi(s) = sphere(W e_s)`` (``StateEncoder(n, d, hidden_layers=0)``, the reference's
phi for DMC proprio; on one-hot states it is the linear map ``Phi = [phi(s_1) .. phi(s_n)]``, d x n) and a
linear action-conditioned predictor ``T(phi, a) = T_a phi`` (no z: the policy is fixed), trained from random
initialization by Adam on the method's own loss terms (``td_target``, ``td_latent_loss``,
``orthonormality_loss`` of ``jepa_lightning.methods.td_jepa``) with EMA targets. The data are every (s, a)
pair with uniform weight, and the TD target is its expectation over s' ~ P_a(s, .) and a' ~ pi(s') (the
expected loss, whose gradient is the mean of the sampled TD gradients), so the run is deterministic.
The fixed point of the TD latent loss is ``T_a Phi = Phi Psi_a^T`` with the closed-form successor features
``Psi_a = P_a (I - gamma P_pi)^-1`` (row s: discounted occupancy of the states visited from the state after
(s, a), the TD-JEPA target ``sum_{t>=0} gamma^t phi(s_{t+1})`` written in the basis Phi). Compared, with
d = n (Phi invertible; the representation's change of basis removed):
``rel_err = max_a ||Phi^-1 T_a Phi - Psi_a^T||_F / ||Psi_a^T||_F``  (claim: below ``--sf-tolerance``, 1e-3),
and likewise for the policy-averaged map ``sum_a pi(a|s) ...`` against ``(I - gamma P_pi)^-1 - I`` over gamma
(which is ``P_pi (I - gamma P_pi)^-1``). A sampled-minibatch variant (real TD: s, a uniform, s' and a' sampled)
is reported with the same metric (its error is limited by the gradient noise; informative only).

Claim 2 (zero-shot RL on walker). TD-JEPA (the tiny recipe's architecture, scaled up a little) is trained on
the embedded reward-free walker dataset (``OfflineRLDataModule(embedded="walker")``); then for stand, walk and
run: rewards of ``--infer-samples`` training transitions are relabeled from their next physics states, z is
inferred by least squares on psi, and pi_z is rolled out. Baselines: a uniformly random policy, and a per-task
offline TD3 (plain TD3 with the same actor noise, or TD3+BC with ``--td3-bc``) trained on the same transitions
with the relabeled reward for the same number of gradient steps and batch size. Returns are over
``--episodes`` episodes of ``--time-limit`` steps. Claim: TD-JEPA's zero-shot return is far above random on
each task (``> 2x``); compared with TD3 (which sees the task's reward during training) as measured.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time

import numpy as np
import torch
from common import summary

from jepa_lightning.eval.rankme import effective_rank
from jepa_lightning.masks import step_generator
from jepa_lightning.methods.td_jepa import TDJEPA, orthonormality_loss, td_latent_loss, td_target
from jepa_lightning.nn.rl import MLP, StateEncoder, truncated_normal_sample
from jepa_lightning.targets import ema_update


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
    worst = max(r["rel_err_max_over_actions"] for r in runs)
    return {"expected_loss": runs, "sampled_minibatch": sampled, "tolerance": args.sf_tolerance,
            "worst_rel_err": worst, "holds": bool(worst < args.sf_tolerance)}


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


def train_td_jepa(data: dict[str, torch.Tensor], args: argparse.Namespace, seed: int) -> tuple[TDJEPA, dict]:
    """TD-JEPA (asymmetric) on the reward-free transitions, the training step of ``TDJEPA.training_step``
    without the Trainer (same objective, optimizer and EMA updates)."""
    torch.manual_seed(seed)
    obs_dim, act_dim = data["obs"].shape[1], data["action"].shape[1]
    model = TDJEPA(StateEncoder(obs_dim, args.phi_dim, 256, hidden_layers=0), act_dim,
                   StateEncoder(obs_dim, args.psi_dim, 256, hidden_layers=2), predictor_hidden_dim=args.hidden,
                   actor_hidden_dim=args.hidden, discount=args.discount, lr_phi=args.lr, lr_psi=args.lr,
                   lr_predictor=args.lr, lr_actor=args.lr, encoder_ema=(args.ema, args.ema),
                   predictor_ema=(args.ema, args.ema), seed=seed)
    opt = model.configure_optimizers()["optimizer"]
    n, g = len(data["obs"]), torch.Generator().manual_seed(seed)
    start, log = time.perf_counter(), {}
    for step in range(args.steps):
        idx = torch.randint(n, (args.batch_size,), generator=g)
        batch = {k: data[k][idx] for k in ("obs", "action", "next_obs", "terminal")}
        out = model.objective(batch, step_generator(seed, 0, step))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        model.update_targets()
        if step == args.steps - 1:
            log = {k: round(float(out[k].detach()), 4) for k in ("td_phi", "td_psi", "ortho_phi", "ortho_psi", "q")}
            log["phi_rank"] = round(float(effective_rank(out["phi"])), 2)
            log["psi_rank"] = round(float(effective_rank(out["psi"])), 2)
    log["seconds"] = round(time.perf_counter() - start, 1)
    return model.eval(), log


def train_td3(data: dict[str, torch.Tensor], reward: torch.Tensor, args: argparse.Namespace,
              seed: int) -> tuple[torch.nn.Module, float]:
    """Offline TD3 (Fujimoto et al. 2018: twin critics, clipped double Q, target-policy smoothing, delayed actor
    updates, Polyak targets), or TD3+BC (Fujimoto & Gu 2021) with ``--td3-bc-alpha > 0``, on the transitions
    with the task's relabeled reward; same batch size, number of steps, discount and actor noise as TD-JEPA."""
    torch.manual_seed(seed)
    obs_dim, act_dim = data["obs"].shape[1], data["action"].shape[1]
    critic = MLP(obs_dim + act_dim, 1, args.hidden, 2, ensemble=2)
    actor = MLP(obs_dim, act_dim, args.hidden, 2)
    critic_t, actor_t = copy.deepcopy(critic).requires_grad_(False), copy.deepcopy(actor).requires_grad_(False)
    c_opt = torch.optim.Adam(critic.parameters(), lr=args.td3_lr)
    a_opt = torch.optim.Adam(actor.parameters(), lr=args.td3_lr)
    n, g = len(data["obs"]), torch.Generator().manual_seed(seed)
    not_done = 1.0 - data["terminal"].float()
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(n, (args.batch_size,), generator=g)
        o, a, o2 = data["obs"][idx], data["action"][idx], data["next_obs"][idx]
        with torch.no_grad():
            a2 = truncated_normal_sample(torch.tanh(actor_t(o2)), 0.2, 0.5, g)
            q2 = critic_t(torch.cat([o2, a2], -1)).min(0).values.squeeze(-1)  # clipped double Q
            y = reward[idx] + args.discount * not_done[idx] * q2
        q = critic(torch.cat([o, a], -1)).squeeze(-1)  # [2, B]
        c_loss = (q - y).pow(2).mean(1).sum()
        c_opt.zero_grad(set_to_none=True)
        c_loss.backward()
        c_opt.step()
        if step % 2 == 0:  # delayed policy update
            pi = torch.tanh(actor(o))
            q_pi = critic(torch.cat([o, pi], -1))[0].squeeze(-1)
            a_loss = -q_pi.mean()
            if args.td3_bc_alpha > 0:
                a_loss = args.td3_bc_alpha * a_loss / q_pi.abs().mean().detach() + (pi - a).pow(2).mean()
            a_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
            ema_update(actor_t, actor, 0.995)
        ema_update(critic_t, critic, 0.995)
    return actor.eval(), time.perf_counter() - start


def _rollout(domain: str, task: str, policy, args: argparse.Namespace) -> dict:
    from jepa_lightning.rl.envs import make_env
    from jepa_lightning.rl.rollout import rollout

    env = make_env(domain, task, seed=args.eval_seed, time_limit=args.time_limit)
    out = rollout(env, policy, episodes=args.episodes, seed=args.eval_seed)
    return {"mean": round(out["mean_return"], 2), "returns": [round(r, 2) for r in out["returns"]]}


def claim_walker(args: argparse.Namespace) -> dict:
    from jepa_lightning.eval.zero_shot import sample_transitions
    from jepa_lightning.rl.relabel import relabel

    dataset, data = walker_data(args.data, args.max_episodes)
    physics = data["next_physics"].numpy()
    rewards = {t: torch.as_tensor(relabel("walker", t, physics)) for t in args.tasks}
    act_dim = data["action"].shape[1]
    results: dict = {"transitions": len(data["obs"]), "steps": args.steps, "batch_size": args.batch_size,
                     "episodes": args.episodes, "time_limit": args.time_limit, "runs": []}
    for seed in args.seeds:
        run: dict = {"seed": seed}
        model, run["td_jepa_train"] = train_td_jepa(data, args, seed)
        _progress(f"seed {seed}: TD-JEPA trained {run['td_jepa_train']}")
        sub = sample_transitions(dataset, args.infer_samples, seed)
        rng = np.random.default_rng(seed)
        for task in args.tasks:
            reward_sub = torch.as_tensor(relabel("walker", task, sub["next_physics"].numpy()))
            z = model.infer_z(sub["next_obs"], reward_sub)
            actor, td3_seconds = train_td3(data, rewards[task], args, seed)

            def td3_policy(obs, actor=actor):
                with torch.no_grad():
                    return torch.tanh(actor(torch.as_tensor(obs).float().unsqueeze(0)))[0].numpy()

            run[task] = {"td_jepa": _rollout("walker", task, model.policy(z), args),
                         "td3": _rollout("walker", task, td3_policy, args),
                         "random": _rollout("walker", task, lambda obs, rng=rng: rng.uniform(-1, 1, act_dim), args),
                         "td3_train_seconds": round(td3_seconds, 1)}
            _progress(f"seed {seed} {task}: {run[task]}")
        results["runs"].append(run)
    summary_ = {}
    for task in args.tasks:
        summary_[task] = {m: summary([r[task][m]["mean"] for r in results["runs"]])
                          for m in ("td_jepa", "td3", "random")}
        s = summary_[task]
        s["td_jepa_over_random"] = round(s["td_jepa"]["mean"] / max(s["random"]["mean"], 1e-6), 2)
        s["td_jepa_over_td3"] = round(s["td_jepa"]["mean"] / max(s["td3"]["mean"], 1e-6), 2)
    results["summary"] = summary_
    results["holds_far_above_random"] = all(summary_[t]["td_jepa_over_random"] > 2 for t in args.tasks)
    results["beats_td3"] = {t: bool(summary_[t]["td_jepa_over_td3"] > 1) for t in args.tasks}
    return results


def _progress(message: str) -> None:
    print(f"[td_jepa fidelity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small everything")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-states", type=int, default=20)
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--sf-steps", type=int, default=6000)
    p.add_argument("--sf-tolerance", type=float, default=1e-3)
    p.add_argument("--skip-walker", action="store_true")
    p.add_argument("--walker-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--data", default=None, help="folder of walker episodes (default: the embedded dataset)")
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--tasks", nargs="+", default=["stand", "walk", "run"])
    p.add_argument("--steps", type=int, default=6000, help="gradient steps of TD-JEPA and of each TD3")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--phi-dim", type=int, default=64)
    p.add_argument("--psi-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--td3-lr", type=float, default=3e-4)
    p.add_argument("--td3-bc-alpha", type=float, default=0.0, help="> 0: TD3+BC with this alpha (paper: 2.5)")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--discount", type=float, default=0.98)
    p.add_argument("--infer-samples", type=int, default=10_000)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--time-limit", type=int, default=1000)
    p.add_argument("--eval-seed", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.sf_steps = args.seeds[:1], min(args.sf_steps, 1500)
        args.walker_seeds, args.steps, args.episodes, args.time_limit = args.walker_seeds[:1], 50, 1, 50
        args.hidden, args.infer_samples, args.max_episodes = 64, 1000, args.max_episodes or 5
    out: dict = {"claim_1_linear_successor_features": claim_linear(args)}
    if not args.skip_walker:
        seeds, args.seeds = args.seeds, args.walker_seeds
        out["claim_2_walker_zero_shot"] = claim_walker(args)
        args.seeds = seeds
    return out


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(json.dumps(result, indent=2))
