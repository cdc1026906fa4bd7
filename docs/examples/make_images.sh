#!/usr/bin/env bash
# Makes docs/img/diagnostics.png and docs/img/curves.png (run from the repository root).
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-runs}
rm -rf "$OUT/diagnostics" "$OUT/curves"
$PY docs/examples/diagnostics_pendulum.py --steps 1600 --log-dir "$OUT/diagnostics" --output docs/img/diagnostics.png
# Tiny rl-zoo runs: PETS (smaller planning than zoo_configs/pets.yml) and SAC (rl-zoo's settings), 2 seeds each.
for seed in 0 1; do
  $PY -m sb3_mbrl train --algo pets --env Pendulum-v1 -n 800 --eval-freq 200 --eval-episodes 2 --num-threads 1 \
    -f "$OUT"/curves/logs --seed $seed --hyperparams horizon:15 \
    "planner_kwargs:dict(population_size=50, num_elites=5, iterations=3, noise_beta=2.0)"
  $PY -m sb3_mbrl train --algo sac --env Pendulum-v1 -n 800 --eval-freq 200 --eval-episodes 2 --num-threads 1 \
    -f "$OUT"/curves/baselines --seed $seed
done
$PY -m sb3_mbrl plot --folders "$OUT"/curves/logs "$OUT"/curves/baselines --labels ours rl-zoo --algos pets sac \
  --env Pendulum-v1 -o docs/img/curves.png --title "Pendulum-v1, 2 seeds, 800 env steps"
