"""Generator schedules over a whole GAIL run (imitation calls ``learn`` once per round)."""
from typing import Any, Dict, List, Tuple

from rl_zoo3.utils import linear_schedule
from stable_baselines3 import PPO
from stable_baselines3.common.type_aliases import Schedule

from sb3_mbrl.imitation_learning.common import ImitationError

# PPO arguments that take a schedule (rl-zoo's ``lin_<x>`` strings are read for these).
SCHEDULE_KEYS: Tuple[str, ...] = ("learning_rate", "clip_range", "clip_range_vf")


def read_schedules(gen_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """
    A copy of the generator's PPO arguments with rl-zoo's ``"lin_<x>"`` strings (as a JSON config
    writes a linear schedule) turned into rl-zoo's ``linear_schedule(x)``.
    """
    out = dict(gen_kwargs)
    for key in SCHEDULE_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            kind, _, initial = value.partition("_")
            try:
                start = float(initial)
            except ValueError:
                start = None
            if kind != "lin" or start is None:
                raise ImitationError(f"GAIL generator {key}={value!r}: expected a number, a schedule or 'lin_<x>'")
            out[key] = linear_schedule(start)
    return out


class RunSchedule:
    """
    A PPO schedule that reads the progress of the whole GAIL run, not of the current ``learn``
    call. imitation trains the generator with one ``learn(n_envs * n_steps,
    reset_num_timesteps=False)`` per round, so SB3's ``progress_remaining`` restarts in every
    round and is 0 at every update: a linear learning rate would be 0 throughout.
    ``progress_remaining`` is set by ``RunProgress`` before each round; the schedule ignores the
    value SB3 passes.

    :param schedule: the schedule to follow (SB3's own, as PPO built it)
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.progress_remaining = 1.0

    def __call__(self, _progress_of_this_learn_call: float) -> float:
        return self.schedule(self.progress_remaining)


class RunProgress:
    """
    Puts ``RunSchedule`` in place of a PPO generator's schedules for a run of ``n_rounds``
    rounds, advances them round by round, and ``restore()`` gives the model its own schedules
    back (so that a saved generator, or a later ``learn()``, uses SB3's progress as usual).

    Round ``k`` (from 0) updates at progress ``1 - (k + 1) / n_rounds``, as SB3 would at the end
    of that round's rollout in a single ``learn`` over the whole run.

    :param model: the generator
    :param n_rounds: rounds the run makes
    """

    def __init__(self, model: PPO, n_rounds: int) -> None:
        self.model = model
        self.n_rounds = max(int(n_rounds), 1)
        self._originals: List[Tuple[str, Schedule]] = []
        self._schedules: List[RunSchedule] = []
        for name in ("lr_schedule", "clip_range", "clip_range_vf"):
            original = getattr(model, name, None)
            if callable(original):
                schedule = RunSchedule(original)
                self._originals.append((name, original))
                self._schedules.append(schedule)
                setattr(model, name, schedule)
        self.set_round(0)

    def set_round(self, round_index: int) -> None:
        """The progress for round ``round_index``'s update."""
        progress = max(0.0, 1.0 - (int(round_index) + 1) / self.n_rounds)
        for schedule in self._schedules:
            schedule.progress_remaining = progress

    def restore(self) -> None:
        for name, original in self._originals:
            setattr(self.model, name, original)
