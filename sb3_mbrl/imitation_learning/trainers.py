"""BC and GAIL through `imitation`, each returning an SB3 ``PPO`` model that holds the learned policy."""
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch as th
from imitation.data.types import Trajectory
from stable_baselines3 import PPO

from sb3_mbrl.common.files import PathLike
from sb3_mbrl.imitation_learning.common import (
    ImitationError,
    VariableHorizonError,
    check_fixed_horizon,
    make_venv,
    variable_horizon_message,
)
from sb3_mbrl.imitation_learning.demos import DemonstrationError, check_demos_match_spaces
from sb3_mbrl.imitation_learning.progress import GAILProgress, make_progress_logger
from sb3_mbrl.imitation_learning.schedules import RunProgress, read_schedules


def _quiet_logger(log_dir: Optional[PathLike] = None):
    """imitation's logger; writes nothing unless ``log_dir`` is given (then log + csv there)."""
    from imitation.util import logger as imit_logger

    if log_dir is None:
        import tempfile

        return imit_logger.configure(folder=tempfile.gettempdir(), format_strs=[])
    return imit_logger.configure(folder=str(log_dir), format_strs=["log", "csv"])


def _check_demos(demos: Sequence[Trajectory], observation_space: gym.Space, action_space: gym.Space) -> None:
    if demos is None or len(demos) == 0:
        raise DemonstrationError("No demonstrations given (zero episodes)")
    check_demos_match_spaces(demos, observation_space, action_space)


# ---------------------------------------------------------------------------------------------
# BC


# BC defaults per action space. Box (Pendulum-v1, 10 demos, seeds 0-4): a (64, 64) policy for 3,000
# steps scored 0.78 / 0.67 / 0.96 / 0.78 / 0.98 of the expert, (256, 256) for 10,000 steps 0.95 /
# 0.99 / 0.99 / 1.00 / 0.99; (64, 64) for 20,000 steps or (256, 256) at lr 3e-4 did not (0.76 and
# 0.80 on seed 0).
# The swing-up needs the capacity: small errors near the top compound over the 200 steps.
BC_DISCRETE: Dict[str, Any] = dict(n_batches=3000, net_arch=(64, 64))
BC_BOX: Dict[str, Any] = dict(n_batches=10_000, net_arch=(256, 256))


def bc_defaults(action_space: gym.Space) -> Dict[str, Any]:
    """The default BC gradient steps and policy layers for an action space (a copy)."""
    return dict(BC_BOX if isinstance(action_space, gym.spaces.Box) else BC_DISCRETE)


def bc_settings(
    action_space: gym.Space, n_batches: Optional[int] = None, net_arch: Optional[Sequence[int]] = None
) -> Dict[str, Any]:
    """``n_batches`` and ``net_arch`` as given, ``bc_defaults`` where ``None``."""
    settings = bc_defaults(action_space)
    if n_batches is not None:
        settings["n_batches"] = int(n_batches)
    if net_arch is not None:
        settings["net_arch"] = tuple(int(width) for width in net_arch)
    return settings


def clone_into(
    model: PPO,
    demos: Sequence[Trajectory],
    n_batches: int,
    seed: int = 0,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    ent_weight: float = 1e-3,
    l2_weight: float = 0.0,
    log_dir: Optional[PathLike] = None,
) -> None:
    """
    Behavioural cloning of ``demos`` into ``model.policy`` (in place) with
    ``imitation.algorithms.bc.BC``: ``n_batches`` gradient steps on mini-batches of ``batch_size``.
    """
    from imitation.algorithms import bc

    trainer = bc.BC(
        observation_space=model.observation_space,
        action_space=model.action_space,
        rng=np.random.default_rng(seed),
        policy=model.policy,
        demonstrations=list(demos),
        batch_size=batch_size,
        optimizer_kwargs={"lr": learning_rate},
        ent_weight=ent_weight,
        l2_weight=l2_weight,
        device=model.device,
        custom_logger=_quiet_logger(log_dir),
    )
    with warnings.catch_warnings():
        # imitation's BC logger calls float() on tensors that require grad
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
        trainer.train(n_batches=int(n_batches), progress_bar=False, log_interval=max(1, int(n_batches)))


def train_bc(
    demos: Sequence[Trajectory],
    env_id: str,
    seed: int = 0,
    n_batches: Optional[int] = None,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    net_arch: Optional[Sequence[int]] = None,
    ent_weight: float = 1e-3,
    l2_weight: float = 0.0,
    device: str = "auto",
    log_dir: Optional[PathLike] = None,
) -> PPO:
    """
    Behavioural cloning with ``imitation.algorithms.bc.BC``.

    The cloned policy is the ``ActorCriticPolicy`` of an (untrained) SB3 ``PPO`` model, so the
    result is an ordinary SB3 model: ``model.predict``, ``evaluate_policy``, ``model.save(path)``
    and ``PPO.load(path)`` (safe with torch >= 2.6), and it can be fine-tuned with ``model.learn``.

    :param n_batches: gradient steps (the same number whatever the amount of data); default
        from ``bc_defaults`` for the action space
    :param net_arch: hidden layers of the policy (and its unused value net); default from ``bc_defaults``
    """
    venv = make_venv(env_id, n_envs=1, seed=seed, rollout_info=False)
    _check_demos(demos, venv.observation_space, venv.action_space)
    settings = bc_settings(venv.action_space, n_batches, net_arch)
    n_batches, net_arch = settings["n_batches"], settings["net_arch"]
    model = PPO("MlpPolicy", venv, seed=seed, device=device, policy_kwargs={"net_arch": list(net_arch)})
    clone_into(model, demos, n_batches=n_batches, seed=seed, batch_size=batch_size, learning_rate=learning_rate,
               ent_weight=ent_weight, l2_weight=l2_weight, log_dir=log_dir)
    model.policy.set_training_mode(False)
    return model


# ---------------------------------------------------------------------------------------------
# GAIL

# Generator (PPO) settings. Box actions: rl-zoo's PPO Pendulum-v1 hyperparameters. Discrete:
# imitation's seals/CartPole-v0 GAIL example, with shorter rollouts (more rounds per step).
GAIL_GEN_DISCRETE: Dict[str, Any] = dict(
    n_envs=8, n_steps=256, batch_size=64, ent_coef=0.0, learning_rate=4e-4, gamma=0.95, n_epochs=5
)
# Box learning rate: 3e-4 decayed linearly over the whole run. With BC pre-training (below),
# Pendulum-v1 at 368,640 steps, seeds 0-4: 0.97 / 0.97 / 0.99 / 0.99 / 0.99 of the expert; lin_1e-3
# 0.96 / 0.96 / 0.79 / 0.99 / 0.99 (seed 2: the first rounds pulled the BC start down and it did not
# recover); rl-zoo's constant 1e-3 from scratch 0.97 / 0.79 / 0.90 / 0.82 / 0.95. Probes on seeds 1 / 3:
# the decay alone 0.87 / 0.63; BC pre-training alone (seed 3) 0.70, swinging from -110 to -770.
GAIL_GEN_BOX: Dict[str, Any] = dict(
    n_envs=4, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate="lin_3e-4",
    clip_range=0.2, use_sde=True, sde_sample_freq=4,
)
# Discriminator settings. Discrete: imitation's seals/CartPole-v0 GAIL example. Box: fewer and
# slower discriminator updates on a whole round of generator data; with the Discrete settings the
# Pendulum-v1 generator reached -280 at 41k steps and then collapsed (-1,043 at 164k, seed 0).
GAIL_DISC_DISCRETE: Dict[str, Any] = dict(demo_batch_size=1024, gen_replay_buffer_capacity=512, n_disc_updates_per_round=8)
GAIL_DISC_BOX: Dict[str, Any] = dict(
    demo_batch_size=1024, gen_replay_buffer_capacity=4096, n_disc_updates_per_round=4, disc_opt_kwargs={"lr": 3e-4}
)


# BC gradient steps on the demos that start the generator's policy before GAIL's first round
# (0: from scratch). Box: 10,000 as BC's own default; the generator keeps PPO's (64, 64) policy.
GAIL_BC_PRETRAIN_DISCRETE = 0
GAIL_BC_PRETRAIN_BOX = 10_000


def gail_bc_pretrain_default(action_space: gym.Space) -> int:
    """The default ``bc_pretrain_batches`` of ``train_gail`` for an action space."""
    return GAIL_BC_PRETRAIN_BOX if isinstance(action_space, gym.spaces.Box) else GAIL_BC_PRETRAIN_DISCRETE


def gail_defaults(action_space: gym.Space) -> Dict[str, Dict[str, Any]]:
    """The default generator and discriminator settings for an action space (copies)."""
    box = isinstance(action_space, gym.spaces.Box)
    gen, disc = (GAIL_GEN_BOX, GAIL_DISC_BOX) if box else (GAIL_GEN_DISCRETE, GAIL_DISC_DISCRETE)
    return {"gen": dict(gen), "disc": {key: dict(v) if isinstance(v, dict) else v for key, v in disc.items()}}


def gail_config_for(config: Dict[str, Any], env_id: str) -> Dict[str, Dict[str, Any]]:
    """
    The ``{"gen": ..., "disc": ...}`` overrides of a GAIL config (copies): ``config`` holds them
    directly or keyed by env id (then ``env_id``'s entry, empty when it has none).
    """
    if not isinstance(config, dict):
        raise ImitationError(f"A GAIL config is a JSON object, got {type(config).__name__}")
    entry = config if set(config) <= {"gen", "disc"} else config.get(env_id, {})
    unknown = set(entry) - {"gen", "disc"}
    if unknown:
        raise ImitationError(f"GAIL config entry for {env_id} has unknown keys {sorted(unknown)}: expected 'gen' and 'disc'")
    return {"gen": dict(entry.get("gen") or {}), "disc": dict(entry.get("disc") or {})}


def train_gail(
    demos: Sequence[Trajectory],
    env_id: str,
    timesteps: int,
    seed: int = 0,
    gen_kwargs: Optional[Dict[str, Any]] = None,
    disc_kwargs: Optional[Dict[str, Any]] = None,
    reward_hid_sizes: Sequence[int] = (32, 32),
    bc_pretrain_batches: Optional[int] = None,
    allow_variable_horizon: bool = False,
    device: str = "auto",
    log_dir: Optional[PathLike] = None,
    callback: Optional[Callable[[int], None]] = None,
    verbose: int = 0,
) -> PPO:
    """
    GAIL with ``imitation.algorithms.adversarial.gail.GAIL``: a PPO generator and a
    ``BasicRewardNet`` discriminator whose inputs are normalised by a ``RunningNorm`` layer.

    :param timesteps: generator environment steps (rounded down to whole rounds of
        ``n_envs * n_steps``)
    :param gen_kwargs: overrides of the generator's settings (``n_envs`` and PPO arguments);
        defaults from ``gail_defaults``. ``learning_rate``, ``clip_range`` and ``clip_range_vf``
        take a number, a schedule or rl-zoo's ``"lin_<x>"``; schedules follow the whole run
        (``schedules.RunSchedule``), not each round
    :param disc_kwargs: overrides of ``demo_batch_size``, ``gen_replay_buffer_capacity``,
        ``n_disc_updates_per_round``, ``disc_opt_kwargs`` ...
    :param bc_pretrain_batches: BC gradient steps on ``demos`` (``clone_into``) that start the
        generator's policy before the first round; 0 starts from scratch; default from
        ``gail_bc_pretrain_default`` for the action space
    :param log_dir: where to write ``progress.csv`` (one row per round, the keys of
        ``progress.ROUND_MEANS`` and the generator's true return) and imitation's own logs
        (under ``imitation/``); nothing is written when ``None``
    :param callback: ``callback(round)`` called after each round, once its progress is recorded
    :param verbose: 1 prints each round's progress as a table (SB3's stdout logger)
    :return: the generator, an SB3 ``PPO`` model (save with ``model.save``)
    """
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm

    check_fixed_horizon(env_id, seed=seed, allow_variable_horizon=allow_variable_horizon)
    probe = make_venv(env_id, n_envs=1, seed=seed, rollout_info=False)
    defaults = gail_defaults(probe.action_space)
    _check_demos(demos, probe.observation_space, probe.action_space)
    probe.close()
    gen = read_schedules({**defaults["gen"], **(gen_kwargs or {})})
    disc = {**defaults["disc"], **(disc_kwargs or {})}
    # imitation needs demo_batch_size <= number of expert transitions: shrink it for few demos.
    n_transitions = sum(len(traj) for traj in demos)
    if disc["demo_batch_size"] > n_transitions:
        disc["demo_batch_size"] = n_transitions
        disc.pop("demo_minibatch_size", None)
    n_envs = int(gen.pop("n_envs"))
    round_steps = n_envs * int(gen.get("n_steps", 2048))
    if int(timesteps) < round_steps:
        raise ImitationError(f"GAIL needs at least one round of n_envs * n_steps = {round_steps} steps, got {timesteps}")

    venv = make_venv(env_id, n_envs=n_envs, seed=seed, rollout_info=False)
    learner = PPO("MlpPolicy", venv, seed=seed, device=device, **gen)
    if bc_pretrain_batches is None:
        bc_pretrain_batches = gail_bc_pretrain_default(venv.action_space)
    if int(bc_pretrain_batches) < 0:
        raise ImitationError(f"bc_pretrain_batches must be >= 0, got {bc_pretrain_batches}")
    if bc_pretrain_batches:
        clone_into(learner, demos, n_batches=int(bc_pretrain_batches), seed=seed)
    reward_net = BasicRewardNet(
        observation_space=venv.observation_space,
        action_space=venv.action_space,
        normalize_input_layer=RunningNorm,
        hid_sizes=tuple(reward_hid_sizes),
    )
    trainer = GAIL(
        demonstrations=list(demos),
        venv=venv,
        gen_algo=learner,
        reward_net=reward_net,
        allow_variable_horizon=allow_variable_horizon,
        custom_logger=_quiet_logger(None if log_dir is None else Path(log_dir) / "imitation"),
        **disc,
    )
    n_rounds = int(timesteps) // trainer.gen_train_timesteps
    run_progress = RunProgress(learner, n_rounds)  # schedules follow the run, not each round's learn()

    def after_round(round_index: int) -> None:
        run_progress.set_round(round_index + 1)
        if callback is not None:
            callback(round_index)

    progress = GAILProgress(trainer, venv, n_rounds=n_rounds, logger=make_progress_logger(verbose, log_dir),
                            callback=after_round)
    try:
        trainer.train(int(timesteps), callback=progress)
    except ValueError as error:
        if "Episodes of different length" in str(error):
            raise VariableHorizonError(variable_horizon_message(env_id, [])) from error
        raise
    finally:
        run_progress.restore()
        venv.close()
    # The learner still holds imitation's reward-wrapped training envs, now closed: give it fresh
    # ones so that a further learn() (fine-tuning on the task's reward) works as on any SB3 model.
    learner.set_env(make_venv(env_id, n_envs=n_envs, seed=seed, rollout_info=False))
    learner.policy.set_training_mode(False)
    return learner


def set_torch_threads(n: Optional[int]) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given (small MLPs run best on one thread)."""
    if n:
        th.set_num_threads(int(n))
