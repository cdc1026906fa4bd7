"""PETS planning speed at mbrl-lib's Pendulum configuration, side by side with mbrl-lib (issue 14).

The configuration of mbrl-lib 0.2's PETS notebook on Pendulum-v1: CEM population 500 x 5
iterations, horizon 15, 20 particles, TS-inf (``fixed_model``), a 5 x 4x200 SiLU ensemble with a
learned reward. One planning step is 500 x 20 x 15 x 5 = 750,000 row passes through one 4x200
member, 184 GFLOP.

Per round, one torch thread for everything, nothing else running:

- ``ours``: ``MPCPolicy.predict`` (the whole planning step) in float32 and in bfloat16, on a model
  fitted to 1,000 random Pendulum transitions; median seconds over ``--steps`` steps.
- ``bare_bmm``: the bare ``torch.bmm`` chain of the same shapes in each dtype (5 members x 2,000
  rows, 4 -> 200 -> 200 -> 200 -> 200 -> 8, no bias, no activation), times the 75 forwards of a step.
  ``share_of_bare`` is its time over ours (1.0: planning costs exactly the matrix products).
- ``mbrllib``: ``../shared/anchors/anchor_mbrllib_pets.py`` run in its own virtual environment
  (``--anchor-venv`` or ``$ANCHOR_VENV``; skipped when absent), 10 planned steps after its random
  episode; its ``plan_step_s_mean``.
- ``plan_agreement``: from 4 fixed start states with the same seeds, the fp32 and bf16 planners'
  plans scored by the fp32 model (mean prediction of all members): the largest relative gap.

On a CPU without AVX512-BF16/AMX units torch emulates bf16 (a bf16 product is 20x slower than a
float32 one on an AVX2-only AMD EPYC), so our bf16 planning steps are skipped there (``--bf16-anyway``
runs them) and a ``skipped`` line says why; the bare bf16 chain (2 repeats) and the plan agreement
still run.

Rounds interleave the systems so that a change of machine load hits all of them. Prints one JSON line
per result, writes ``benchmarks/results/planning_speed.jsonl`` and ``planning_speed.png``. Usage:

    python -m benchmarks.planning_speed [--rounds 2] [--steps 5] [--anchor-venv ~/.cache/anchor-venv]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch as th  # noqa: E402

from benchmarks.common import RESULTS, ROOT, emit, random_transitions  # noqa: E402
from sb3_mbrl.dynamics.inference import cpu_capabilities, has_fast_bfloat16  # noqa: E402

POPULATION, ITERATIONS, HORIZON, PARTICLES = 500, 5, 15, 20
ENSEMBLE, HIDDEN = 5, [200, 200, 200, 200]
OBS_DIM, ACTION_DIM = 3, 1
ANCHOR = ROOT.parent / "shared" / "anchors" / "anchor_mbrllib_pets.py"
DTYPES = {"float32": th.float32, "bfloat16": th.bfloat16}


def layer_sizes() -> List[int]:
    return [OBS_DIM + ACTION_DIM, *HIDDEN, 2 * (OBS_DIM + 1)]  # output: mean and log-variance of [delta, reward]


def gflop_per_step() -> float:
    sizes = layer_sizes()
    rows = POPULATION * PARTICLES * HORIZON * ITERATIONS
    return 2 * rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) / 1e9


def bare_bmm_seconds(dtype: th.dtype, repeats: int = 20) -> float:
    """Seconds per planning step of the bare bmm chain: 75 forwards of 5 x 2,000 rows."""
    sizes = layer_sizes()
    weights = [th.randn(ENSEMBLE, a, b, dtype=dtype) * 0.05 for a, b in zip(sizes[:-1], sizes[1:])]
    x0 = th.randn(ENSEMBLE, POPULATION * PARTICLES // ENSEMBLE, sizes[0], dtype=dtype)

    def chain() -> None:
        x = x0
        for weight in weights:
            x = th.bmm(x, weight)

    for _ in range(3):
        chain()
    start = time.perf_counter()
    for _ in range(repeats):
        chain()
    return (time.perf_counter() - start) / repeats * HORIZON * ITERATIONS


def make_policies(seed: int = 0) -> Dict[str, Any]:
    """One fitted model, planned in each dtype by an MPCPolicy at the anchor's configuration."""
    import gymnasium as gym

    from sb3_mbrl.dynamics import EnsembleTrainer
    from sb3_mbrl.pets.policies import MPCPolicy

    env = gym.make("Pendulum-v1")
    obs, actions, next_obs, rewards = random_transitions("Pendulum-v1", 1000, seed)
    policies = {}
    state = None
    for name, dtype in DTYPES.items():
        th.manual_seed(seed)
        policy = MPCPolicy(
            env.observation_space,
            env.action_space,
            lambda _: 1e-3,
            net_arch=HIDDEN,
            ensemble_size=ENSEMBLE,
            horizon=HORIZON,
            num_particles=PARTICLES,
            propagation="fixed_model",
            planner="cem",
            planner_kwargs=dict(population_size=POPULATION, iterations=ITERATIONS, num_elites=POPULATION // 10, alpha=0.1),
            planning_dtype=name,
        )
        if state is None:
            EnsembleTrainer(policy.dynamics, max_epochs=20, min_updates=0).fit(
                obs, actions, next_obs, rewards, generator=th.Generator().manual_seed(seed)
            )
            state = policy.state_dict()
        policy.load_state_dict(state)
        policy.fitted.fill_(True)
        policies[name] = policy
    return {"policies": policies, "obs": obs}


def time_ours(policy, obs: np.ndarray, steps: int) -> List[float]:
    """Seconds of each of ``steps`` planning steps along recorded observations (after one warm-up step)."""
    policy.reset_plans()
    policy.predict(obs[:1])
    times = []
    for i in range(steps):
        start = time.perf_counter()
        policy.predict(obs[i + 1 : i + 2])
        times.append(time.perf_counter() - start)
    return times


def plan_agreement(policies: Dict[str, Any]) -> Dict[str, Any]:
    """Scores of the fp32 and bf16 plans from fixed starts and seeds, under the fp32 model's mean prediction."""
    from sb3_mbrl.dynamics import ModelEnv

    starts = th.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.8, -0.6, 2.0], [-0.5, -0.87, 0.5]])
    judge = ModelEnv(policies["float32"].dynamics, propagation="expectation", deterministic=True)
    scores = {}
    for name, policy in policies.items():
        th.manual_seed(0)
        policy.model_env.generator = th.Generator().manual_seed(0)
        plan = policy.receding_horizon.planner.optimize(
            lambda c, p=policy: p.model_env.evaluate_action_sequences(c, starts, PARTICLES), n_starts=starts.shape[0]
        )
        policy.model_env.generator = None
        scores[name] = judge.evaluate_action_sequences(plan[:, None], starts)[:, 0]
    gap = ((scores["bfloat16"] - scores["float32"]) / scores["float32"].abs()).abs()
    return {
        "fp32_plan_returns": [round(v, 3) for v in scores["float32"].tolist()],
        "bf16_plan_returns": [round(v, 3) for v in scores["bfloat16"].tolist()],
        "max_relative_gap": round(float(gap.max()), 5),
    }


def time_mbrllib(anchor_venv: Path) -> Optional[float]:
    """mbrl-lib's mean seconds per planned step (10 steps after its random episode), in its own venv."""
    python = anchor_venv / "bin" / "python"
    command = [str(python), str(ANCHOR), "--episodes", "2", "--max-steps-per-episode", "10", "--model-epochs", "5", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ANCHOR.parent, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["plan_step_s_mean"])


def plot(records: List[Dict[str, Any]], path: Path) -> None:
    labels, values = [], []
    for system, dtype in [("mbrllib", "float32"), ("ours", "float32"), ("bare_bmm", "float32"), ("ours", "bfloat16"), ("bare_bmm", "bfloat16")]:
        times = [r["s_per_step"] for r in records if r.get("system") == system and r.get("dtype") == dtype and "s_per_step" in r]
        if times:
            labels.append(f"{system}\n{dtype}")
            values.append(float(np.median(times)))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(labels, values, color=["tab:gray" if "mbrllib" in label else "tab:blue" if "ours" in label else "tab:green" for label in labels])
    for i, value in enumerate(values):
        ax.text(i, value, f"{value:.2f}", ha="center", va="bottom")
    ax.set_ylabel("seconds per planning step")
    ax.set_title(f"PETS planning, CEM {POPULATION}x{ITERATIONS}, H {HORIZON}, {PARTICLES} particles, 5 x 4x200, 1 thread")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="planning steps timed per dtype per round")
    parser.add_argument("--anchor-venv", type=Path, default=os.environ.get("ANCHOR_VENV") or Path.home() / ".cache" / "anchor-venv")
    parser.add_argument("--out", type=Path, default=RESULTS / "planning_speed.jsonl")
    parser.add_argument("--bf16-anyway", action="store_true", help="time bf16 on a CPU that emulates it, too")
    args = parser.parse_args()
    th.set_num_threads(1)
    anchor_ok = (args.anchor_venv / "bin" / "python").exists() and ANCHOR.exists()
    if not anchor_ok:
        print(f"mbrl-lib's venv not found at {args.anchor_venv} (see ../shared/anchors/README.md): timing ours only", file=sys.stderr)
    gflop = gflop_per_step()
    setup = make_policies()
    records: List[Dict[str, Any]] = []
    capabilities = cpu_capabilities()
    native_bf16 = has_fast_bfloat16(th.device("cpu"))
    machine = {
        "cpu": capabilities.get("cpu_name") or platform.processor() or platform.machine(),
        "cpu_capability": th.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16,
        "torch": th.__version__,
        "threads": th.get_num_threads(),
    }
    timed_dtypes = [name for name in DTYPES if name == "float32" or native_bf16 or args.bf16_anyway]
    if "bfloat16" not in timed_dtypes:
        emit(dict(system="ours", dtype="bfloat16", skipped="this CPU has no AVX512-BF16/AMX units: torch emulates bf16, "
                  "so PETS' planning_dtype='auto' plans in float32 here (--bf16-anyway times it)"), records)
    for round_index in range(args.rounds):
        for name in timed_dtypes:
            policy = setup["policies"][name]
            times = time_ours(policy, setup["obs"], args.steps)
            seconds = float(np.median(times))
            emit(dict(system="ours", dtype=name, round=round_index, s_per_step=round(seconds, 4),
                      s_per_step_all=[round(t, 4) for t in times], gflop_per_s=round(gflop / seconds, 1)), records)
            bare = bare_bmm_seconds(DTYPES[name])
            emit(dict(system="bare_bmm", dtype=name, round=round_index, s_per_step=round(bare, 4),
                      gflop_per_s=round(gflop / bare, 1), ours_share_of_bare=round(bare / seconds, 3)), records)
        for name in DTYPES:
            if name not in timed_dtypes:  # emulated bf16: the bare chain alone shows what it costs
                bare = bare_bmm_seconds(DTYPES[name], repeats=2)
                emit(dict(system="bare_bmm", dtype=name, round=round_index, s_per_step=round(bare, 4),
                          gflop_per_s=round(gflop / bare, 1)), records)
        if anchor_ok:
            seconds = time_mbrllib(args.anchor_venv)
            emit(dict(system="mbrllib", dtype="float32", round=round_index, s_per_step=round(seconds, 4),
                      gflop_per_s=round(gflop / seconds, 1)), records)
    emit(dict(system="plan_agreement", **plan_agreement(setup["policies"])), records)
    summary: Dict[str, Any] = dict(system="summary", gflop_per_step=round(gflop, 1), **machine)
    median = {(s, d): float(np.median([r["s_per_step"] for r in records if r.get("system") == s and r.get("dtype") == d]))
              for s, d in {(r["system"], r["dtype"]) for r in records if "s_per_step" in r}}
    for name in timed_dtypes:
        summary[f"{name}_share_of_bare_bmm"] = round(median[("bare_bmm", name)] / median[("ours", name)], 3)
        if ("mbrllib", "float32") in median:
            summary[f"{name}_ratio_to_mbrllib"] = round(median[("ours", name)] / median[("mbrllib", "float32")], 3)
    emit(summary, records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    plot(records, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
