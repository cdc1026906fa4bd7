"""Torch intra-op threads under a shared CPU: 1 vs n threads, idle vs loaded, for our three hot paths.

- ``plan``: one PETS planning step at the Pendulum-v1 zoo config (iCEM 100 x 4, H 25, 5 particles,
  5 x 3x200 members, bf16), the README's main job.
- ``fit``: one ensemble fit of 20 epochs on 1,000 Pendulum transitions (5 x 3x200, batch 256).
- ``sac``: 100 SAC gradient steps (MBPO's update, rl-zoo's Pendulum SAC: 256x256, batch 256).

Each (workload, threads, load) runs in its own process; ``loaded`` starts one other
single-threaded torch job (a matmul loop) beside it, as when another run shares the machine.
Prints one JSON line per result (median seconds of the repeats), writes
``benchmarks/results/threads.jsonl`` and ``threads.png``. Usage:

    python -m benchmarks.threads [--threads 1 2] [--repeats 15]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

from benchmarks.common import RESULTS, emit, random_transitions

WORKLOADS = ("plan", "fit", "sac")


def worker(workload: str, threads: int, repeats: int) -> List[float]:
    """Seconds of each repeat of ``workload`` with ``threads`` torch threads (runs in its own process)."""
    import numpy as np
    import torch as th

    th.set_num_threads(threads)
    th.manual_seed(0)
    obs, actions, next_obs, rewards = random_transitions("Pendulum-v1", 1000)
    if workload == "plan":
        from benchmarks.common import zoo_kwargs
        from sb3_mbrl import PETS

        model = PETS("MlpPolicy", "Pendulum-v1", seed=0, **zoo_kwargs("pets", "Pendulum-v1"))
        model.model_trainer.max_epochs = 5
        model.model_trainer.fit(obs, actions, next_obs, rewards)
        model.policy.fitted.fill_(True)
        run = lambda: model.policy.predict(obs[:1])  # noqa: E731
        run()  # warm-up: first call builds the planner
    elif workload == "fit":
        from sb3_mbrl.dynamics import EnsembleTrainer, ProbabilisticEnsemble

        ensemble = ProbabilisticEnsemble(3, 1, ensemble_size=5, hidden_sizes=[200, 200, 200], learn_reward=True)
        trainer = EnsembleTrainer(ensemble, batch_size=256, max_epochs=20, patience=1000)
        run = lambda: trainer.fit(obs, actions, next_obs, rewards)  # noqa: E731
        repeats = max(3, repeats // 3)
    else:
        from stable_baselines3 import SAC

        model = SAC("MlpPolicy", "Pendulum-v1", seed=0, batch_size=256, learning_starts=0)
        model.learn(300)  # fills the buffer (and its first updates warm up)
        run = lambda: model.train(gradient_steps=100, batch_size=256)  # noqa: E731
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


LOAD_SCRIPT = "import torch; torch.set_num_threads(1); a = torch.randn(512, 512)\nwhile True: a = torch.tanh(a @ a)"


def measure(workload: str, threads: int, loaded: bool, repeats: int) -> Dict[str, Any]:
    import numpy as np

    load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT]) if loaded else None
    try:
        if load is not None:
            time.sleep(2.0)  # let the other job spin up
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.threads", "--worker", workload, "--threads", str(threads),
             "--repeats", str(repeats)],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
    finally:
        if load is not None:
            load.kill()
            load.wait()
    seconds = json.loads(out.strip().splitlines()[-1])
    return dict(
        benchmark="threads", workload=workload, threads=threads, load="loaded" if loaded else "idle",
        median_s=round(float(np.median(seconds)), 4), p95_s=round(float(np.percentile(seconds, 95)), 4),
        repeats=len(seconds), cpus=os.cpu_count(),
    )


def plot(records: List[Dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r["threads"] for r in records})
    fig, axes = plt.subplots(1, len(WORKLOADS), figsize=(4 * len(WORKLOADS), 3.2))
    for ax, workload in zip(axes, WORKLOADS):
        for offset, load in enumerate(("idle", "loaded")):
            values = [next(r["median_s"] for r in records if r["workload"] == workload and r["threads"] == t
                           and r["load"] == load) for t in threads]
            ax.bar([i + 0.4 * offset for i in range(len(threads))], values, width=0.4, label=load)
        ax.set_xticks([i + 0.2 for i in range(len(threads))], [f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        ax.set_title(workload)
        ax.set_ylabel("median seconds")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "threads.jsonl"))
    parser.add_argument("--plot", default=str(RESULTS / "threads.png"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads[0], args.repeats)))
        return
    records: List[Dict[str, Any]] = []
    for workload in args.workloads:
        for loaded in (False, True):
            for threads in args.threads:
                emit(measure(workload, threads, loaded, args.repeats), records)
    with open(args.out, "w") as file:
        file.writelines(json.dumps(r) + "\n" for r in records)
    if set(args.workloads) == set(WORKLOADS):
        plot(records, args.plot)


if __name__ == "__main__":
    main()
