"""Push2D: a planar pushing task with contact and a scripted expert (ACT-JEPA's embedded demonstrations).

A point agent (a disk of radius ``agent_radius``) moves in the square ``[-1, 1]^2`` and must push a round block
(radius ``block_radius``) until the block's centre is within ``tolerance`` of a goal. The agent cannot pass
through the block: contact pushes the block along the contact normal (quasi-static pushing: the block moves only
while it is pushed, and slides off sideways when it is pushed off-centre), so the agent has to walk around the
block to the side opposite the goal and then push it along the line to the goal.

Dynamics (deterministic, one step)::

    v     <- lag * v + (1 - lag) * max_speed * clip(action, -1, 1)      first-order velocity control
    p     <- clip(p + v, walls)                                         agent position
    if |block - p| < R:   block <- p + R * (block - p) / |block - p|     contact, R = agent + block radius
    block <- clip(block, walls); if still in contact: p <- block - R * n  (the agent stops at a pinned block)

Observation (float32, 12): agent position (2), agent velocity / max_speed (2), block position (2), goal (2), and
the relative vectors block - agent (2) and goal - block (2) (as robotics benchmarks such as FetchPush include the
object's relative position), all in about ``[-1, 1]``, so a policy needs no input normalization. Action (2): a velocity command in ``[-1, 1]``.
``observation_keys`` picks (and orders) those parts by name (:data:`OBSERVATION_PARTS`); e.g. :data:`PROPRIOCEPTION`
(the agent's own position and velocity, 4 floats) for a policy that must see the block and the goal in
``render()``'s frames (ACT-JEPA's image + proprioception setting). The physics state and ``render()`` always hold
the whole scene; :func:`state_observations` gives the full 12-d observation of recorded physics states.
Reward: the progress of the block towards the goal in the step (previous distance - new distance), plus 1 on
success; the episode ends on success (``success()`` is then True) or at ``time_limit`` steps.

The scripted expert (:class:`PushExpert`) walks around the block on a circle to the point behind it (seen from
the goal), then pushes with a lateral correction that keeps the block on the agent-goal line, slowing down near
the goal. When the agent starts on the far side, going around clockwise and counter-clockwise are equally good:
the expert picks the side at random once per episode, so the demonstrations are bimodal there (what ACT's
action chunking is for), and it adds Gaussian noise to every action. It succeeds on 200 of 200 seeded layouts.

The module keeps the name ``reach2d`` (the embedded dataset ``reach2d_expert`` of :mod:`jepa_lightning.rl.embedded`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from jepa_lightning.rl.episodes import write_episode, write_metadata

# the observation's parts, 2 floats each, in the default observation's order
OBSERVATION_PARTS = ("agent", "velocity", "block", "goal", "agent_to_block", "block_to_goal")
PROPRIOCEPTION = ("agent", "velocity")  # what the agent knows of itself


@dataclass(frozen=True)
class PushConfig:
    """Task parameters (stored in the demonstrations' ``dataset.json`` so the task can be rebuilt)."""

    agent_radius: float = 0.05
    block_radius: float = 0.1
    tolerance: float = 0.05
    max_speed: float = 0.06
    lag: float = 0.5
    time_limit: int = 80
    observation_keys: tuple[str, ...] | None = None  # None: every part (OBSERVATION_PARTS)


class Push2D:
    """The push task (implements :class:`jepa_lightning.rl.rollout.Env`, with ``success()`` and ``render()``);
    ``observation_keys``: the observation's parts (names of :data:`OBSERVATION_PARTS`, in the order given; None:
    all 12 floats)."""

    action_dim = 2

    def __init__(self, agent_radius: float = 0.05, block_radius: float = 0.1, tolerance: float = 0.05,
                 max_speed: float = 0.06, lag: float = 0.5, time_limit: int = 80,
                 observation_keys: Sequence[str] | None = None) -> None:
        if min(agent_radius, block_radius, tolerance, max_speed) <= 0 or not 0 <= lag < 1 or time_limit < 1:
            raise ValueError(
                f"Push2D: radii, tolerance and max_speed must be > 0, lag in [0, 1), time_limit >= 1; got "
                f"agent_radius={agent_radius}, block_radius={block_radius}, tolerance={tolerance}, "
                f"max_speed={max_speed}, lag={lag}, time_limit={time_limit}")
        if observation_keys is not None:
            observation_keys = tuple(observation_keys)
            unknown = [k for k in observation_keys if k not in OBSERVATION_PARTS]
            if unknown or not observation_keys or len(set(observation_keys)) < len(observation_keys):
                raise ValueError(f"Push2D: observation_keys must be distinct names of {OBSERVATION_PARTS}, got "
                                 f"{list(observation_keys)}")
        self.config = PushConfig(agent_radius, block_radius, tolerance, max_speed, lag, int(time_limit),
                                 observation_keys)
        self.observation_keys = observation_keys or OBSERVATION_PARTS
        self.observation_dim = 2 * len(self.observation_keys)
        self.contact = agent_radius + block_radius
        self.agent = np.zeros(2)
        self.velocity = np.zeros(2)
        self.block = np.zeros(2)
        self.goal = np.zeros(2)
        self.t = 0

    # ------------------------------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> np.ndarray:
        """A random layout: block in ``[-0.5, 0.5]^2``, goal 0.3-0.8 away from it (inside ``[-0.6, 0.6]^2``),
        the agent anywhere in ``[-0.85, 0.85]^2`` at least 0.1 clear of the block; zero velocity."""
        rng = np.random.default_rng(seed)
        self.block = rng.uniform(-0.5, 0.5, 2)
        while True:
            self.goal = rng.uniform(-0.6, 0.6, 2)
            if 0.3 <= np.linalg.norm(self.goal - self.block) <= 0.8:
                break
        while True:
            self.agent = rng.uniform(-0.85, 0.85, 2)
            if np.linalg.norm(self.agent - self.block) >= self.contact + 0.1:
                break
        self.velocity = np.zeros(2)
        self.t = 0
        return self.observation()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        c = self.config
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        before = self.distance()
        self.velocity = c.lag * self.velocity + (1.0 - c.lag) * c.max_speed * action
        self.agent = np.clip(self.agent + self.velocity, -1.0 + c.agent_radius, 1.0 - c.agent_radius)
        self._resolve_contact()
        self.t += 1
        success = self.success()
        reward = before - self.distance() + (1.0 if success else 0.0)
        return self.observation(), float(reward), bool(success or self.t >= c.time_limit)

    def _resolve_contact(self) -> None:
        c = self.config
        offset = self.block - self.agent
        dist = float(np.linalg.norm(offset))
        if dist >= self.contact:
            return
        normal = offset / dist if dist > 1e-9 else np.array([1.0, 0.0])
        self.block = np.clip(self.agent + self.contact * normal, -1.0 + c.block_radius, 1.0 - c.block_radius)
        offset = self.block - self.agent
        dist = float(np.linalg.norm(offset))
        if dist < self.contact:  # the block is pinned against a wall: the agent stops at its surface
            normal = offset / dist if dist > 1e-9 else normal
            self.agent = self.block - self.contact * normal

    # ------------------------------------------------------------------------------------------ state
    def distance(self) -> float:
        return float(np.linalg.norm(self.block - self.goal))

    def success(self) -> bool:
        return self.distance() < self.config.tolerance

    def observation(self, keys: Sequence[str] | None = None) -> np.ndarray:
        """The parts ``keys`` of the current state (default: the env's ``observation_keys``), float32."""
        parts = {"agent": self.agent, "velocity": self.velocity / self.config.max_speed, "block": self.block,
                 "goal": self.goal, "agent_to_block": self.block - self.agent, "block_to_goal": self.goal - self.block}
        return np.concatenate([parts[k] for k in (keys or self.observation_keys)]).astype(np.float32)

    def physics_state(self) -> np.ndarray:
        """``[agent x, y, velocity x, y, block x, y, goal x, y, t]`` float64."""
        return np.concatenate([self.agent, self.velocity, self.block, self.goal, [self.t]]).astype(np.float64)

    def set_physics_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (9,):
            raise ValueError(f"Push2D physics state must have shape (9,), got {state.shape}")
        self.agent, self.velocity, self.block, self.goal = (state[0:2].copy(), state[2:4].copy(),
                                                            state[4:6].copy(), state[6:8].copy())
        self.t = int(state[8])

    def render(self, size: int = 64) -> np.ndarray:
        """A ``[size, size, 3]`` uint8 top view: white floor, the goal region green, the block blue, the
        agent red (disks rasterized with numpy, no renderer)."""
        coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
        x, y = np.meshgrid(coords, -coords)  # row 0 is the top (y = 1)
        image = np.full((size, size, 3), 255, dtype=np.uint8)
        for centre, radius, colour in ((self.goal, self.config.tolerance + 0.02, (60, 180, 75)),
                                       (self.block, self.config.block_radius, (40, 90, 220)),
                                       (self.agent, self.config.agent_radius, (220, 40, 40))):
            inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= max(radius, 1.0 / size) ** 2
            image[inside] = colour
        return image


def make_env(**kwargs: float) -> Push2D:
    """The environment factory named in the demonstrations' metadata (``env_factory``)."""
    return Push2D(**kwargs)


def state_observations(physics: np.ndarray, **config: float) -> np.ndarray:
    """The full observations ``[T, 12]`` (every part) of physics states ``[T, 9]`` (e.g. an episode's
    ``physics``, recorded with a reduced observation); ``config``: the task's parameters (``env_kwargs``)."""
    env = Push2D(**(config | {"observation_keys": None}))
    out = []
    for state in np.asarray(physics):
        env.set_physics_state(state)
        out.append(env.observation(OBSERVATION_PARTS))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------- expert
def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class PushExpert:
    """Hand-written pushing controller for :class:`Push2D` (reads the environment's state, returns an action).

    1. Let ``u`` be the unit vector from the block to the goal and ``delta`` the angle from the agent (seen from
       the block) to the push side ``-u``.
    2. ``|delta| < 15 deg`` and touching: push. Velocity along ``u`` (speed falling with the remaining distance)
       minus a gain times the agent's lateral offset from the block-goal line.
    3. ``|delta| < 25 deg``: go straight to the contact point behind the block.
    4. Otherwise orbit: head for the point of the circle of radius ``R + 0.1`` around the block that is up to 45
       degrees further round in the shorter direction; when the agent is more than 120 degrees away, both
       directions are about as short and the episode's random ``side`` decides.

    Gaussian noise of std ``noise`` is added to each action (then clipped to ``[-1, 1]``).
    """

    def __init__(self, env: Push2D, noise: float = 0.1, seed: int | None = None) -> None:
        self.env, self.noise = env, noise
        self.rng = np.random.default_rng(seed)
        self.side = 1.0

    def reset(self) -> None:
        self.side = float(self.rng.choice([-1.0, 1.0]))

    def clean_action(self) -> np.ndarray:
        env, c = self.env, self.env.config
        to_goal = env.goal - env.block
        dist = float(np.linalg.norm(to_goal))
        u = to_goal / max(dist, 1e-9)
        rel = env.agent - env.block
        r = float(np.linalg.norm(rel))
        delta = _wrap(math.atan2(-u[1], -u[0]) - math.atan2(rel[1], rel[0]))
        if abs(delta) < math.radians(15) and r < env.contact + 0.05:
            lateral = rel - float(rel @ u) * u
            speed = float(np.clip(dist / (2.0 * c.max_speed), 0.25, 1.0))
            velocity = u * speed - 8.0 * lateral
            velocity += 4.0 * ((env.block - u * env.contact) - env.agent)  # keep in touch
        elif abs(delta) < math.radians(25):
            velocity = ((env.block - u * (env.contact - 0.01)) - env.agent) / c.max_speed
        else:
            direction = self.side if abs(delta) > math.radians(120) else math.copysign(1.0, delta)
            angle = math.atan2(rel[1], rel[0]) + direction * min(abs(delta), math.radians(45))
            waypoint = env.block + (env.contact + 0.1) * np.array([math.cos(angle), math.sin(angle)])
            velocity = (waypoint - env.agent) / c.max_speed
        norm = float(np.linalg.norm(velocity))
        return velocity / norm if norm > 1.0 else velocity

    def __call__(self, obs: np.ndarray | None = None) -> np.ndarray:
        action = self.clean_action() + self.noise * self.rng.standard_normal(2)
        return np.clip(action, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------- demos
def collect_demos(episodes: int, seed: int = 0, noise: float = 0.1, pixels: bool = False, image_size: int = 64,
                  only_success: bool = True, env: Push2D | None = None, max_tries: int | None = None
                  ) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Run the expert for ``episodes`` episodes (layouts seeded ``seed``, ``seed + 1``, ...); with
    ``only_success`` failed episodes are dropped and replaced by further layouts. Returns the episodes as
    dicts in the offline RL format (``observation``, ``action``, ``terminal``, ``physics``, ``reward``,
    optional ``pixels``) and statistics (expert success rate over every layout tried)."""
    env = env if env is not None else Push2D()
    expert = PushExpert(env, noise=noise, seed=seed)
    out: list[dict[str, np.ndarray]] = []
    tried = succeeded = 0
    max_tries = max_tries if max_tries is not None else 2 * episodes + 10
    while len(out) < episodes and tried < max_tries:
        expert.reset()
        obs, done = env.reset(seed=seed + tried), False
        tried += 1
        observations, physics, actions, rewards = [obs], [env.physics_state()], [], []
        frames = [env.render(image_size)] if pixels else []
        while not done:
            action = expert(obs)
            obs, reward, done = env.step(action)
            observations.append(obs)
            physics.append(env.physics_state())
            actions.append(action.astype(np.float32))
            rewards.append(reward)
            if pixels:
                frames.append(env.render(image_size))
        success = env.success()
        succeeded += int(success)
        if only_success and not success:
            continue
        terminal = np.zeros(len(actions), dtype=np.bool_)
        terminal[-1] = success  # the episode ends in the success state; a time-out is not terminal
        episode = {"observation": np.stack(observations), "action": np.stack(actions), "terminal": terminal,
                   "physics": np.stack(physics), "reward": np.asarray(rewards, dtype=np.float32)}
        if pixels:
            episode["pixels"] = np.stack(frames)
        out.append(episode)
    if len(out) < episodes:
        raise RuntimeError(f"Push2D expert: only {len(out)} successful episodes in {tried} tries "
                           f"(wanted {episodes}); lower the action noise (noise={noise})")
    return out, {"expert_success_rate": succeeded / tried, "layouts_tried": tried}


def generate_demos(folder: str, episodes: int = 200, seed: int = 0, noise: float = 0.1, pixels: bool = False,
                   image_size: int = 64, observation_keys: Sequence[str] | None = None) -> None:
    """Write ``episodes`` successful expert episodes to ``folder`` (``episode_00000.npz`` ...) with a
    ``dataset.json`` naming the task (``env_factory`` + ``env_kwargs``, so evaluation can rebuild it, with the
    same ``observation_keys``); ``pixels``: also store ``render(image_size)`` frames of every state."""

    env = Push2D(observation_keys=observation_keys)
    demos, stats = collect_demos(episodes, seed=seed, noise=noise, pixels=pixels, image_size=image_size, env=env)
    for i, episode in enumerate(demos):
        write_episode(os.path.join(folder, f"episode_{i:05d}.npz"), **episode)
    write_metadata(folder, task="push2d", env_factory="jepa_lightning.rl.reach2d:make_env",
                   env_kwargs=asdict(env.config), policy="scripted expert (PushExpert)", action_noise=noise,
                   episodes=episodes, seed=seed, pixels=pixels, image_size=image_size if pixels else None,
                   success="|block - goal| < tolerance", **stats)


def generate_embedded_demos(folder: str) -> None:
    """The embedded dataset ``reach2d_expert``: 200 expert demonstrations of Push2D (states only), seed 0."""
    generate_demos(folder, episodes=200, seed=0)
