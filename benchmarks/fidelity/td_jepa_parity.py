"""TD-JEPA side by side with the official code (marbaga/td_jepa_public, the authors' public release of the TD-JEPA
paper's code), imported at run time: are our zero-shot walker returns (benchmarks/fidelity/td_jepa.py) what the
method gives at this size, or a bug of ours?

    python benchmarks/fidelity/td_jepa_parity.py --official /path/to/td_jepa_public --rnd 100 --seeds 0 1 2 3 4
    TDJEPA_OFFICIAL=/path/to/td_jepa_public python benchmarks/fidelity/td_jepa_parity.py --quick   # smoke (~1 min)

Every option other than ``--official`` is td_jepa.py's (the same data, sizes, steps and evaluation). Nothing of the
official code lives in this repository (``load_official`` imports the checkout's metamotivo package, which needs
``gymnasium``, in the ``parity`` extra that ``make install`` installs; benchmarks/fidelity/official.sh clones the
checkout).

1. Equivalence. The official ``TDJEPAAgent`` (asymmetric, states) built at td_jepa.py's sizes and our ``TDJEPA``
   given the same weights (``ours_to_official`` maps the names), the same batch, the same z and the same actor
   noise (both draw it from the global generator in the same order): the same TD, orthonormality and actor losses
   (fp32, 1e-5 relative) and the same gradients of every encoder, predictor and actor tensor. The official update
   is run with every learning rate at 0, so its optimizer steps leave the weights as they were.
2. Training. Per seed, the official agent with its own initialisation (``weight_init``: orthogonal, gain 1 for
   ``nn.Linear``, gain sqrt(2) for its ensemble layers) is trained by its own ``update`` (its five Adam optimizers,
   z, goals and noise from its own sampling, the actor updated after the representation with the updated
   predictor, Polyak targets) for td_jepa.py's ``--steps`` on td_jepa.py's minibatches (the same indices, seed by
   seed), with td_jepa.py's values where the two differ: lr (all parts), tau = 1 - ema, batch, discount, widths,
   phi / psi sizes, orthonormality weights 0.1 (the official DMC recipe's). Then it is evaluated as ours: z by
   its ``reward_inference`` (least squares on psi, rescaled) from the same relabeled transitions, pi_z (the
   actor's mean) rolled out on the same episodes.

Arms: "pretrained" = the official code, "ours" = td_jepa.py's TD-JEPA run of the same seed (its cache; computed
when missing), "random_init" = the uniformly random policy (td_jepa.py's). Claims: the official code's return is
above twice the random policy's on each task (td_jepa.py's bar), and ours and the official code agree on each task
(|mean difference| within twice the combined std). Writes benchmarks/results/td_jepa_parity[_rnd].json
(--quick: runs/bench_td_jepa/parity/td_jepa_parity_quick.json).

Measured (2026-12-06, ``--rnd 100 --seeds 0 1 2 3 4``; an official run ~6 min on one thread, like ours; 43 min in
all with 2 jobs, on a machine that also ran another benchmark for the first 20 min): the equivalence holds (relative
loss difference 8.6e-7 on the orthonormality term, the reduction's order; 58 gradient tensors within 5e-7 of 2.4).
Official zero-shot returns per seed: stand 404 / 486 / 788 / 526 / 427, walk 79 / 321 / 109 / 203 / 131, run 88 /
105 / 99 / 108 / 113 (random 129-137 / 32-36 / 23-24); ours 668 / 640 / 483 / 646 / 547, 117 / 372 / 116 / 243 /
159, 93 / 169 / 87 / 142 / 125. Ours and the official code agree on every task (ours a little higher on the means).
The official code clears twice the random policy beyond the seed spread on run only: on walk it is above twice
random on every seed but, like ours, inside the spread (the same seed, 1, is the high one on both sides: the
minibatch order matters that much at 6000 steps), and on stand its wider spread (one seed at 788) puts it inside too.
So the walk verdict of td_jepa_walker_rnd.json is what the method gives at this size, not a bug of ours. Our
reruns of td_jepa.py's seeds reproduced its published returns to the digit. Differences left by design: the official
actor step comes after the representation step (with the updated predictor and encoder), ours in the same step; its
ensemble layers start orthogonal with gain sqrt(2) (ours 1; predictor weights 1.31x larger in RMS); its reward
inference is plain float32 least squares (ours float64 with a 1e-6 relative ridge).
On the embedded reward-free data (no ``--rnd``, seeds 0 1 2, 24 min with 2 jobs): official stand 315 / 301 / 313,
walk 54 / 51 / 56, run 43 / 52 / 53; ours 336 / 310 / 325, 63 / 57 / 51, 59 / 52 / 53 (td_jepa_walker.json's
published returns, reproduced); they agree on every task and both fall short of twice random on walk and run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import td_jepa  # noqa: E402
from common import agreement_claim, cached, claim_entry, in_parallel, probe_entry, run_worker, save_result  # noqa: E402
from official import import_official, required_checkout  # noqa: E402

from jepa_lightning.methods.td_jepa import TDJEPA  # noqa: E402
from jepa_lightning.nn.rl import sphere  # noqa: E402

REPO, COMMIT = "marbaga/td_jepa_public", "9152a328a5a4379127c625ef5a50003185fd8dd8"
AGENT = "metamotivo.agents.td_jepa.agent"
CACHE = td_jepa.CACHE / "parity"
# our state-dict prefix -> the official model's (longest first), then the layer names inside the MLP blocks
PREFIXES = (("phi_encoder_target.module.mlp.net.", "_target_phi_mlp_encoder.net."),
            ("psi_encoder_target.module.mlp.net.", "_target_psi_mlp_encoder.net."),
            ("phi_predictor_target.module.", "_target_phi_predictor."),
            ("psi_predictor_target.module.", "_target_psi_predictor."),
            ("phi_encoder.mlp.net.", "_phi_mlp_encoder.net."), ("_psi_encoder.mlp.net.", "_psi_mlp_encoder.net."),
            ("phi_predictor.", "_phi_predictor."), ("psi_predictor.", "_psi_predictor."), ("actor.", "_actor."))
BLOCKS = {"_actor.": (("embed_z.net.", "embed_z."), ("embed_s.net.", "embed_s."), ("head.", "policy.")),
          "predictor.": (("embed_z.net.", "embed_z."), ("embed_a.net.", "embed_sa."), ("head.", "Fs."))}
OBS_DIM, ACTION_DIM = 24, 6  # walker's proprioceptive observation and action sizes (the equivalence's batch)


def load_official(path: str) -> ModuleType:
    """The official metamotivo/agents/td_jepa/agent.py from a checkout (clear errors for a wrong folder and for the
    missing gymnasium it imports)."""
    try:
        return import_official(path, REPO, [AGENT], marker="metamotivo/agents/td_jepa/agent.py")[AGENT]
    except ModuleNotFoundError as err:
        if err.name == "gymnasium":
            raise ModuleNotFoundError("the official TD-JEPA code imports gymnasium: install it with "
                                      "`.venv/bin/pip install -c constraints.txt -e \".[parity]\"` (make install does)",
                                      name="gymnasium") from err
        raise


def ours_to_official(name: str) -> str:
    """Our TDJEPA state-dict name -> the official TDJEPAModel's (KeyError for a name with no counterpart)."""
    for mine, theirs in PREFIXES:
        if name.startswith(mine):
            out = theirs + name[len(mine):]
            break
    else:
        raise KeyError(f"no official counterpart for {name!r}")
    for owner, renames in BLOCKS.items():
        if owner in theirs:
            rest = out[len(theirs):]
            for a, b in renames:
                if rest.startswith(a):
                    return theirs + b + rest[len(a):]
    return out


def build_official(agent_module: ModuleType, obs_dim: int, action_dim: int, args: argparse.Namespace, ours: TDJEPA,
                   batch_size: int):
    """The official agent at td_jepa.py's sizes (``args``), with our method's loss weights and noise (``ours``),
    initialised by its own ``weight_init`` (under the caller's torch seed)."""
    import gymnasium

    predictor = {"name": "ForwardArchi", "hidden_dim": args.hidden, "hidden_layers": 1, "embedding_layers": 2,
                 "num_parallel": ours.phi_predictor.ensemble}
    cfg = agent_module.TDJEPAAgentConfig(**{
        "name": "TDJEPAAgent", "compile": False,
        "model": {"device": "cpu", "actor_std": ours.actor_std, "symmetric": False, "actor_use_full_encoder": True,
                  "archi": {"phi_dim": args.phi_dim, "psi_dim": args.psi_dim, "norm_z": True,
                            "phi_mlp_encoder": {"hidden_dim": 256, "hidden_layers": 0, "norm": True},
                            "psi_mlp_encoder": {"hidden_dim": 256, "hidden_layers": 2, "norm": True},
                            "phi_predictor": predictor, "psi_predictor": predictor,
                            "actor": {"name": "simple", "hidden_dim": args.hidden, "hidden_layers": 1,
                                      "embedding_layers": 2}}},
        "train": {"lr_predictor": args.lr, "lr_phi": args.lr, "lr_psi": args.lr, "lr_actor": args.lr,
                  "weight_decay": 0.0, "encoder_target_tau": 1 - args.ema, "predictor_target_tau": 1 - args.ema,
                  "phi_ortho_coef": ours.phi_ortho_coef, "psi_ortho_coef": ours.psi_ortho_coef,
                  "train_goal_ratio": ours.train_goal_ratio, "stddev_clip": ours.stddev_clip,
                  "batch_size": batch_size, "discount": args.discount}})
    space = gymnasium.spaces.Box(low=-np.inf, high=np.inf, shape=(obs_dim,), dtype=np.float32)
    return cfg.build(space, action_dim)


def load_ours_into_official(ours: TDJEPA, official) -> None:
    """Every weight of ours into the official model (targets included); fails naming what does not map."""
    state = {ours_to_official(k): v for k, v in ours.state_dict().items()}
    missing, unexpected = official._model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "_z_cov"]  # its running covariance of z (used only to scale goals: off)
    if missing or unexpected:
        raise KeyError(f"weights that do not map between ours and the official model: missing {missing}, "
                       f"unexpected {unexpected}")


def _batch(batch: int, seed: int, psi_dim: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminal = torch.zeros(batch)
    terminal[::7] = 1.0  # a few terminal transitions: the discount's mask is part of the check
    return {"obs": torch.randn(batch, OBS_DIM, generator=g), "next_obs": torch.randn(batch, OBS_DIM, generator=g),
            "action": torch.rand(batch, ACTION_DIM, generator=g) * 2 - 1, "terminal": terminal,
            "z": sphere(torch.randn(batch, psi_dim, generator=g))}


def equivalence(agent_module: ModuleType, seed: int = 0, batch: int = 64, hidden: int = 64) -> dict:
    """Same weights, batch, z and noise: our loss terms and gradients against the official update's."""
    args = td_jepa.parse_args(["--hidden", str(hidden)])
    torch.manual_seed(seed)
    ours = td_jepa.build_agent("td_jepa", OBS_DIM, ACTION_DIM, args)
    official = build_official(agent_module, OBS_DIM, ACTION_DIM, args, ours, batch)
    load_ours_into_official(ours, official)
    for opt in ("phi_encoder", "psi_encoder", "phi_predictor", "psi_predictor", "actor"):
        for group in getattr(official, f"{opt}_optimizer").param_groups:
            group["lr"] = 0.0  # its update steps its optimizers: at lr 0 the weights stay as they were
    data = _batch(batch, seed + 1, args.psi_dim)
    z = data.pop("z")

    ours.sample_z = lambda n, generator=None, goals=None: z  # the same z on both sides
    torch.manual_seed(seed + 2)  # the target policy's noise, then the actor's: the same draws on both sides
    out = ours.objective(data)
    out["loss"].backward()

    torch.manual_seed(seed + 2)
    discount = official.cfg.train.discount * ~data["terminal"].bool().unsqueeze(-1)
    theirs = official.update_tdjepa_asym(phi_obs=data["obs"], psi_obs=data["obs"], action=data["action"],
                                         discount=discount, phi_next_obs=data["next_obs"],
                                         psi_next_obs=data["next_obs"], z=z)
    grads = {n: p.grad.clone() for n, p in official._model.named_parameters() if p.grad is not None}
    # its actor loss also leaves gradients in the predictor (cleared before the next update): the actor's only here
    theirs.update(official.update_actor(phi_obs=data["obs"], action=data["action"], z=z))
    grads |= {n: p.grad.clone() for n, p in official._model.named_parameters() if n.startswith("_actor.")}

    pairs = {"td_phi": "phi_tdjepa_loss", "td_psi": "psi_tdjepa_loss", "ortho_phi": "phi_orth_loss",
             "ortho_psi": "psi_orth_loss", "actor": "actor_loss", "q": "q"}
    losses = {k: {"ours": float(out[k].detach()), "official": float(theirs[v].detach())} for k, v in pairs.items()}
    loss_diff = max(abs(d["ours"] - d["official"]) / max(1.0, abs(d["official"])) for d in losses.values())
    mine = {ours_to_official(n): p.grad for n, p in ours.named_parameters() if p.grad is not None}
    missing = sorted(set(grads) ^ set(mine))
    common = sorted(set(grads) & set(mine))
    max_grad = max(float(grads[n].abs().max()) for n in common)
    max_diff = max(float((grads[n] - mine[n]).abs().max()) for n in common)
    return {"losses": losses, "max_rel_loss_diff": loss_diff, "max_grad": max_grad, "max_grad_diff": max_diff,
            "grad_tensors": len(common), "grad_missing": missing, "batch": batch, "hidden": hidden}


def init_gains(agent_module: ModuleType, seed: int = 0, hidden: int = 256) -> dict:
    """RMS of a fresh predictor's weights, official over ours, per layer kind: the official ensemble layers are
    orthogonal with gain sqrt(2) (``weight_init``: ``calculate_gain("relu")`` for ``DenseParallel``), ours gain 1."""
    args = td_jepa.parse_args(["--hidden", str(hidden)])
    torch.manual_seed(seed)
    ours = td_jepa.build_agent("td_jepa", OBS_DIM, ACTION_DIM, args)
    official = build_official(agent_module, OBS_DIM, ACTION_DIM, args, ours, 8)
    theirs = dict(official._model.named_parameters())

    def ratio(prefix: str) -> float:
        pairs = [(theirs[ours_to_official(n)], p) for n, p in ours.named_parameters()
                 if n.startswith(prefix) and n.endswith("weight") and p.dim() >= 2]
        return statistics.mean(float(t.detach().pow(2).mean().sqrt() / m.detach().pow(2).mean().sqrt()) for t, m in pairs)

    return {"predictor_weights": ratio("phi_predictor."), "actor_weights": ratio("actor."),
            "encoder_weights": ratio("_psi_encoder.")}


# ------------------------------------------------------------------------------------------ training
class Replay:
    """The official agent's replay interface over td_jepa.py's transitions, giving td_jepa.py's minibatches (the
    same indices, from a generator seeded by the run's seed)."""

    def __init__(self, data: dict[str, torch.Tensor], seed: int) -> None:
        self.data, self.gen = data, torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> dict:
        idx = torch.randint(len(self.data["obs"]), (batch_size,), generator=self.gen)
        return {"observation": self.data["obs"][idx].float(), "action": self.data["action"][idx].float(),
                "next": {"observation": self.data["next_obs"][idx].float(),
                         "terminated": self.data["terminal"][idx].bool().reshape(-1, 1)}}


def run(seed: int, official_path: str, args: argparse.Namespace) -> dict:
    """One official training run (module docstring, 2.) and its zero-shot returns."""
    from jepa_lightning.eval.zero_shot import sample_transitions
    from jepa_lightning.rl.relabel import relabel

    torch.set_num_threads(1)
    start = time.perf_counter()
    agent_module = load_official(official_path)
    dataset, data = td_jepa.walker_data(args.data, args.max_episodes)
    obs_dim, action_dim = data["obs"].shape[1], data["action"].shape[1]
    ours = td_jepa.build_agent("td_jepa", obs_dim, action_dim, args)  # for its loss weights and noise only
    torch.manual_seed(seed)
    agent = build_official(agent_module, obs_dim, action_dim, args, ours, args.batch_size)
    replay = {"train": Replay(data, seed)}
    for step in range(args.steps):
        metrics = agent.update(replay, step)
    train = {k: round(float(v), 4) for k, v in metrics.items()} | {"seconds": round(time.perf_counter() - start, 1)}
    sub = sample_transitions(dataset, args.infer_samples, seed)
    returns = {}
    for task in args.tasks:
        reward = torch.as_tensor(relabel("walker", task, sub["next_physics"].numpy())).float().reshape(-1, 1)
        z = agent._model.reward_inference(sub["next_obs"].float(), reward)

        def policy(obs: np.ndarray, z: torch.Tensor = z) -> np.ndarray:
            x = torch.as_tensor(np.asarray(obs)).float().unsqueeze(0)
            return agent.act(x, z, mean=True)[0].numpy().astype(np.float64)

        returns[task] = td_jepa._rollout(task, policy, args)
    return {"seed": seed, "method": "official", "transitions": len(data["obs"]), "train": train, "returns": returns,
            "seconds": round(time.perf_counter() - start, 1)}


def cache_path(seed: int, args: argparse.Namespace) -> Path:
    digest = hashlib.sha1(" ".join([COMMIT, *td_jepa.worker_args(args)]).encode()).hexdigest()[:10]
    return CACHE / f"official_s{seed}_{args.steps}st_{digest}{'_quick' if args.quick else ''}.json"


def pair(seed: int, official_path: str, args: argparse.Namespace) -> dict:
    wargs = td_jepa.worker_args(args) + (["--quick"] if args.quick else [])
    ours = run_worker(td_jepa.cache_path(seed, "td_jepa", args), td_jepa.__file__,
                      ["--one", str(seed), "td_jepa", *wargs], f"td_jepa seed {seed}", args.fresh)
    theirs = run_worker(cache_path(seed, args), __file__, ["--one", str(seed), "official", "--official", official_path, *wargs],
                        f"official TD-JEPA seed {seed}", args.fresh)
    return {"seed": seed, "ours": ours, "official": theirs}


def entries(pairs: list[dict], tasks: list[str]) -> tuple[list[dict], list[dict]]:
    pairs = sorted(pairs, key=lambda p: p["seed"])

    def scores(task: str) -> dict[str, list[float]]:
        return {"random_init": [p["ours"]["random"][task]["mean"] for p in pairs],
                "pretrained": [p["official"]["returns"][task]["mean"] for p in pairs],
                "ours": [p["ours"]["returns"][task]["mean"] for p in pairs]}

    probes, claims = [], []
    for task in tasks:
        s = scores(task)
        probes.append(probe_entry(task, "return", s))
        twice = td_jepa.twice_random_claim(task, s["pretrained"], s["random_init"])
        claims.append(twice | {"statement": twice["statement"].replace("TD-JEPA's", "the official TD-JEPA code's")})
    for task in tasks:
        s = scores(task)
        claims.append(agreement_claim(f"ours and the official code agree: zero-shot return on {task} (ours minus "
                                      "official)", s["ours"], s["pretrained"]))
    return probes, claims


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    ap.add_argument("--official", default=None, help="checkout of marbaga/td_jepa_public (default: env TDJEPA_OFFICIAL)")
    own, rest = ap.parse_known_args(argv)
    args = td_jepa.parse_args(rest)  # every other option is td_jepa.py's
    official = required_checkout(ap, own.official, "TDJEPA_OFFICIAL", REPO)
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.rnd:
        td_jepa.rnd_data(args)
    if args.one:  # a worker process: one official run, cached
        cached(cache_path(int(args.one[0]), args), run, int(args.one[0]), official, args, fresh=True)
        return
    t0 = time.perf_counter()
    agent_module = load_official(official)
    check = equivalence(agent_module)
    gains = init_gains(agent_module)
    td_jepa.walker_data(args.data, args.max_episodes)  # generates the embedded dataset once, before the workers
    pairs = in_parallel(lambda seed: pair(seed, official, args), [(s,) for s in args.seeds], args.jobs)
    probes, claims = entries(pairs, args.tasks)
    scale = check["max_grad"]
    claims.insert(0, claim_entry(
        "the same weights, batch, z and noise: loss terms and gradients equal to the official update's",
        max(check["max_rel_loss_diff"], check["max_grad_diff"] / scale),
        f"relative loss diff <= 1e-05 and max grad diff <= 1e-05 x max |grad| (fp32; {check['grad_tensors']} "
        "tensors)", bool(check["max_rel_loss_diff"] <= 1e-5 and check["max_grad_diff"] <= 1e-5 * scale
                         and not check["grad_missing"])))
    seconds = max(time.perf_counter() - t0, sum(p["official"]["seconds"] + p["ours"]["seconds"] for p in pairs)
                  / args.jobs)
    config = {"official": f"{REPO} at {COMMIT}", "equivalence": check, "official_init_over_ours_rms": gains,
              "td_jepa_args": {k: getattr(args, k) for k in td_jepa.WALKER_ARGS} | {"tasks": args.tasks},
              "official_train_seconds": [p["official"]["train"]["seconds"] for p in pairs],
              "official_final_metrics": [p["official"]["train"] for p in pairs], "quick": args.quick}
    setting = ("the official TD-JEPA code (arm pretrained) and ours side by side on "
               + td_jepa.walker_setting(args, pairs[0]["ours"]["transitions"]))
    notes = ("Arms: pretrained = the OFFICIAL code (marbaga/td_jepa_public's TDJEPAAgent with its own initialisation, "
             "update and reward inference) trained on td_jepa.py's minibatches; ours = td_jepa.py's TD-JEPA run of the "
             "same seed; random_init = the uniformly random policy. Both are rolled out on the same episodes. The "
             f"official ensemble (predictor) layers start {gains['predictor_weights']:.2f}x larger in RMS than ours "
             "(its orthogonal gain sqrt(2) against our 1); the encoders and actor start alike.")
    name = "td_jepa_parity" + ("_rnd" if args.rnd else "") + ("_quick" if args.quick else "")
    command = "benchmarks/fidelity/td_jepa_parity.py" + (f" --rnd {args.rnd}" if args.rnd else "") + \
        f" --seeds {' '.join(map(str, args.seeds))}"
    path = save_result(name, "TD-JEPA", command, setting, config, args.seeds, seconds, probes, claims, notes=notes,
                       directory=CACHE if args.quick else None)
    print(json.dumps(json.loads(path.read_text()), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
