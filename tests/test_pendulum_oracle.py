"""The oracle behind the README's seed 4 figure steps exactly as Pendulum-v1 does."""
import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.pendulum_oracle import pendulum_step


def test_pendulum_step_matches_gymnasium() -> None:
    env = gym.make("Pendulum-v1")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(300):  # swings through the speed limit and the angle wrap
        theta, theta_dot = env.unwrapped.state
        torque = float(rng.uniform(-2.5, 2.5))  # beyond the limit too: both clip it
        _, reward, *_ = env.step(np.array([torque], dtype=np.float32))
        next_theta, next_theta_dot, our_reward = pendulum_step(
            th.tensor([theta], dtype=th.float64), th.tensor([theta_dot], dtype=th.float64), th.tensor([torque], dtype=th.float64)
        )
        assert abs(float(our_reward) - reward) < 1e-4
        assert np.allclose([float(next_theta), float(next_theta_dot)], env.unwrapped.state, atol=1e-4)
