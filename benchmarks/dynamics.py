"""Dynamics-model benchmark: fit time, accuracy, open-loop error, calibration, throughput.

Prints one JSON line per figure. Usage:
    python benchmarks/dynamics.py [--envs Pendulum-v1 InvertedPendulum-v4] [--transitions 5000] [--threads 1]
"""
import argparse
import json
import time
from typing import Dict, List

import gymnasium as gym
import numpy as np
import torch as th

from sb3_mbrl.dynamics import EnsembleTrainer, ModelEnv, ProbabilisticEnsemble
from sb3_mbrl.envs import get_termination_fn


def sig(value, digits: int = 4) -> float:
    """Round to significant digits (small errors stay visible)."""
    return float(f"{float(value):.{digits}g}")


def emit(record: Dict) -> None:
    print(json.dumps(record), flush=True)


def random_transitions(env_id: str, n: int, seed: int) -> Dict[str, np.ndarray]:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows: List[tuple] = []
    while len(rows) < n:
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    keys = ("obs", "actions", "next_obs", "rewards")
    return {k: np.array(v, dtype=np.float32) for k, v in zip(keys, zip(*rows))}


def open_loop_segments(env_id: str, n_segments: int, horizon: int, seed: int):
    """
    Real trajectories of ``horizon`` random actions, each from a state a few random steps after reset.

    Steps go through ``env.unwrapped`` so every segment has ``horizon`` steps; ``alive`` marks the
    steps before the real env would have terminated (the model never saw data past that).
    """
    env = gym.make(env_id)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    term_fn = get_termination_fn(env_id)
    starts, actions, real_obs = [], [], []
    for i in range(n_segments):
        obs, _ = env.reset(seed=seed + 1000 + i)
        for _ in range(int(rng.integers(0, 5))):
            obs, *_ = env.unwrapped.step(env.action_space.sample())
        seg_actions = np.array([env.action_space.sample() for _ in range(horizon)], dtype=np.float32)
        starts.append(obs)
        real_obs.append([env.unwrapped.step(a)[0] for a in seg_actions])
        actions.append(seg_actions)
    starts, actions, real_obs = (np.array(x, dtype=np.float32) for x in (starts, actions, real_obs))
    if term_fn is None:
        alive = np.ones(real_obs.shape[:2], dtype=bool)
    else:
        flat = th.as_tensor(real_obs.reshape(-1, real_obs.shape[-1]))
        terminated = term_fn(flat, flat[:, :0], flat).numpy().reshape(real_obs.shape[:2])
        # Step t counts if no step before it terminated (the terminal step itself was observed).
        alive = np.concatenate([np.ones((n_segments, 1), bool), np.cumsum(terminated, axis=1)[:, :-1] == 0], axis=1)
    return starts, actions, real_obs, alive


def predictive_moments(model: ProbabilisticEnsemble, obs: th.Tensor, actions: th.Tensor):
    """Mixture mean and variance over the elites, raw units: ``(B, out)`` each."""
    mean, var = model.predict(obs, actions, members=model.elite_indices)  # (n_elites, B, out)
    mix_mean = mean.mean(0)
    mix_var = var.mean(0) + mean.var(0, unbiased=False)
    return mix_mean, mix_var


def bench_env(env_id: str, n_transitions: int, seed: int) -> None:
    th.manual_seed(seed)
    data = random_transitions(env_id, n_transitions, seed)
    test = random_transitions(env_id, 2000, seed + 1)
    obs_dim, act_dim = data["obs"].shape[1], data["actions"].shape[1]
    model = ProbabilisticEnsemble(obs_dim, act_dim, ensemble_size=5, num_elites=5)
    trainer = EnsembleTrainer(model, max_epochs=200)
    start = time.perf_counter()
    metrics = trainer.fit(data["obs"], data["actions"], data["next_obs"], data["rewards"])
    fit_s = time.perf_counter() - start
    base = dict(env=env_id, transitions=n_transitions, seed=seed)
    emit(dict(base, metric="fit_seconds", value=round(fit_s, 2), epochs=metrics["epochs"]))
    emit(dict(base, metric="holdout_mse_normalized", value=sig(metrics["holdout_mse_elites"])))

    with th.no_grad():
        o, a = th.as_tensor(test["obs"]), th.as_tensor(test["actions"])
        target = th.cat([th.as_tensor(test["next_obs"]) - o, th.as_tensor(test["rewards"])[:, None]], 1)
        mean, var = predictive_moments(model, o, a)
        inside = ((target - mean).abs() <= 1.96 * var.sqrt()).float()
        test_mse = (((target - mean) / model.target_std) ** 2).mean()
        # A target that is constant in the data (InvertedPendulum's reward) is trivially inside.
        varying = (target.std(0) > 1e-6)
    emit(dict(base, metric="test_mse_normalized", value=sig(test_mse), rows=len(o)))
    emit(dict(base, metric="calibration_95", value=sig(inside[:, varying].mean()),
              per_dim=[sig(x) for x in inside.mean(0)], constant_dims_excluded=int((~varying).sum())))

    horizon = 20
    starts, actions, real_obs, alive = open_loop_segments(env_id, 200, horizon, seed + 2)
    env = ModelEnv(model, propagation="expectation", deterministic=True)
    pred = th.as_tensor(starts)
    errors = []
    with th.no_grad():
        for t in range(horizon):
            pred, _, _ = env.step(pred, th.as_tensor(actions[:, t]))
            errors.append((pred - th.as_tensor(real_obs[:, t])).pow(2).mean(1).sqrt().numpy())
    errors = np.array(errors).T  # (segments, H)
    obs_scale = float(np.linalg.norm(data["obs"].std(0)) / np.sqrt(obs_dim))
    for k in (1, 5, 20):
        ok = alive[:, k - 1]
        emit(dict(base, metric=f"open_loop_rmse_{k}_step", value=sig(errors[ok, k - 1].mean()),
                  relative_to_obs_std=sig(errors[ok, k - 1].mean() / obs_scale), segments=int(ok.sum())))

    # Throughput: ModelEnv.step against the bare bmm chain of the same shapes.
    batch = 10_000
    big_obs, big_act = th.randn(batch, obs_dim), th.randn(batch, act_dim)
    env = ModelEnv(model, propagation="random_model")
    step_s = timeit(lambda: env.step(big_obs, big_act))
    n_el = model.num_elites
    xs = [th.randn(n_el, batch // n_el, layer.in_features) for layer in (*model.hidden_layers, model.output_layer)]
    ws = [layer.weight[model.elite_indices].detach() for layer in (*model.hidden_layers, model.output_layer)]
    bmm_s = timeit(lambda: [th.bmm(x, w) for x, w in zip(xs, ws)])
    emit(dict(base, metric="model_env_step_rows_per_s", value=round(batch / step_s), batch=batch))
    emit(dict(base, metric="bare_bmm_rows_per_s", value=round(batch / bmm_s), batch=batch))
    emit(dict(base, metric="step_to_bmm_speed_ratio", value=round(bmm_s / step_s, 3)))


def timeit(fn, repeats: int = 30) -> float:
    with th.no_grad():
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "InvertedPendulum-v4"])
    parser.add_argument("--transitions", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    emit(dict(metric="setup", torch=th.__version__, threads=args.threads))
    for env_id in args.envs:
        bench_env(env_id, args.transitions, args.seed)


if __name__ == "__main__":
    main()
