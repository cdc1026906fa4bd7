"""GAIL's progress per round on an SB3 logger: discriminator loss and accuracies, generator losses, true return."""
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.vec_env import VecEnv

from sb3_mbrl.common.files import PathLike

# Our key -> the key under which imitation's logger holds the round's mean (``accumulate_means``).
ROUND_MEANS: Dict[str, str] = {
    "disc/loss": "mean/disc/disc_loss",
    "disc/acc": "mean/disc/disc_acc",
    "disc/acc_expert": "mean/disc/disc_acc_expert",
    "disc/acc_gen": "mean/disc/disc_acc_gen",
    "disc/entropy": "mean/disc/disc_entropy",
    "gen/policy_gradient_loss": "mean/gen/train/policy_gradient_loss",
    "gen/value_loss": "mean/gen/train/value_loss",
    "gen/entropy_loss": "mean/gen/train/entropy_loss",
    "gen/approx_kl": "mean/gen/train/approx_kl",
    "rollout/ep_rew_wrapped_mean": "mean/gen/rollout/ep_rew_wrapped_mean",
}


def make_progress_logger(verbose: int = 1, log_dir: Optional[PathLike] = None) -> Logger:
    """An SB3 logger: a table on stdout per round when ``verbose >= 1``, and ``progress.csv`` in ``log_dir``."""
    formats = (["stdout"] if verbose >= 1 else []) + (["csv"] if log_dir is not None else [])
    return configure_logger(None if log_dir is None else str(log_dir), formats)


class GAILProgress:
    """
    The ``callback(round)`` given to imitation's ``AdversarialTrainer.train``: after each round it
    records the round's means that imitation accumulated (discriminator loss, accuracy on expert
    and on generated transitions, the generator's PPO losses, the discriminator reward) and the
    mean true return of the generator's episodes that ended in the round (read from the
    ``Monitor`` of each env), then dumps them at the generator's timestep count.

    :param trainer: imitation's GAIL trainer
    :param venv: the generator's environments as created (each env in a ``Monitor``), not wrapped
    :param n_rounds: rounds the run will make (for ``time/n_rounds``)
    :param logger: where to record (``make_progress_logger``)
    :param callback: the user's ``callback(round)``, called after recording
    """

    def __init__(
        self,
        trainer: Any,
        venv: VecEnv,
        n_rounds: int,
        logger: Logger,
        callback: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.trainer = trainer
        self.venv = venv
        self.n_rounds = int(n_rounds)
        self.logger = logger
        self.callback = callback
        self._episodes_seen = [0] * venv.num_envs
        self._start = time.time()

    def _new_episode_returns(self) -> List[float]:
        returns: List[float] = []
        for i, rewards in enumerate(self.venv.env_method("get_episode_rewards")):
            returns.extend(rewards[self._episodes_seen[i]:])
            self._episodes_seen[i] = len(rewards)
        return returns

    def __call__(self, round_index: int) -> None:
        means = self.trainer.logger.default_logger.name_to_value
        timesteps = int(self.trainer.gen_algo.num_timesteps)
        row: Dict[str, float] = {"time/round": round_index + 1, "time/n_rounds": self.n_rounds,
                                 "time/total_timesteps": timesteps,
                                 "time/fps": int(timesteps / max(time.time() - self._start, 1e-9))}
        returns = self._new_episode_returns()
        if returns:
            row["rollout/ep_rew_mean"] = float(np.mean(returns))
            row["rollout/n_episodes"] = len(returns)
        row.update({key: float(means[source]) for key, source in ROUND_MEANS.items() if source in means})
        for key, value in row.items():
            self.logger.record(key, value)
        self.logger.dump(step=timesteps)
        if self.callback is not None:
            self.callback(round_index)
