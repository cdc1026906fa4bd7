"""benchmarks/loop.py's verdict on issue 17's goals: judged only over the algorithms each goal names."""
import json

import pytest

from benchmarks.loop import seed_summary, summarize


def _run(algo: str, curve, task: str = "Reacher-v4", seed: int = 0) -> dict:
    return dict(benchmark="loop", task=task, algo=algo, seed=seed, eval_curve=curve, steps=curve[-1][0])


def test_reacher_goal_needs_pets_mbpo_and_sac():
    runs = {"LOOP": _run("LOOP", [[5000, -6.0]]), "SAC": _run("SAC", [[5000, -9.0]])}
    partial = seed_summary("Reacher-v4", 0, runs)
    assert partial["goal_met"] is None and partial["missing"] == ["PETS", "MBPO"]  # not judged without them
    behind = seed_summary("Reacher-v4", 0, {**runs, "MBPO": _run("MBPO", [[5000, -5.6]])})
    assert behind["goal_met"] is False and behind["missing"] == ["PETS"]  # behind MBPO: missed whatever PETS does
    runs.update(PETS=_run("PETS", [[5000, -7.0]]), MBPO=_run("MBPO", [[5000, -6.5]]))
    assert seed_summary("Reacher-v4", 0, runs)["goal_met"] is True
    runs["MBPO"] = _run("MBPO", [[5000, -5.6]])
    full = seed_summary("Reacher-v4", 0, runs)
    assert full["goal_met"] is False and "missing" not in full


def test_idp_goal_needs_mbpo_and_sac_and_pendulum_needs_loop_only():
    loop = _run("LOOP", [[2000, 5000.0], [3000, 9100.0]], task="InvertedDoublePendulum-v4")
    assert seed_summary("InvertedDoublePendulum-v4", 0, {"LOOP": loop})["goal_met"] is None
    late = _run("LOOP", [[15000, 8000.0]], task="InvertedDoublePendulum-v4")
    assert seed_summary("InvertedDoublePendulum-v4", 0, {"LOOP": late})["goal_met"] is False  # never reached
    others = {"MBPO": _run("MBPO", [[8000, 9200.0]], "InvertedDoublePendulum-v4"),
              "SAC": _run("SAC", [[15000, 100.0]], "InvertedDoublePendulum-v4")}  # never reached: a quarter of 15,000
    assert seed_summary("InvertedDoublePendulum-v4", 0, {"LOOP": loop, **others})["goal_met"] is True
    others["MBPO"] = _run("MBPO", [[5000, 9200.0]], "InvertedDoublePendulum-v4")  # 3,000 > half of 5,000
    assert seed_summary("InvertedDoublePendulum-v4", 0, {"LOOP": loop, **others})["goal_met"] is False
    pendulum = _run("LOOP", [[200, -1200.0], [400, -150.0]], task="Pendulum-v1")
    assert seed_summary("Pendulum-v1", 0, {"LOOP": pendulum})["goal_met"] is True
    assert seed_summary("Pendulum-v1", 0, {"SAC": _run("SAC", [[400, -150.0]], "Pendulum-v1")})["goal_met"] is None


def test_summarize_joins_the_runs_of_several_processes(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in [
        _run("LOOP", [[5000, -6.0]]), _run("SAC", [[5000, -9.0]]), _run("LOOP", [[5000, -8.0]], seed=1),
        dict(benchmark="loop", task="Reacher-v4", seed=0, last_eval={"LOOP": -6.0}, goal_met=True),  # an old summary line
    ]) + "\n")
    second.write_text(json.dumps(_run("MBPO", [[5000, -7.0]])) + "\n" + json.dumps(_run("PETS", [[5000, -6.5]])) + "\n")
    summaries = summarize([str(first), str(second)])
    seeds = [s for s in summaries if "seed" in s]
    assert [(s["seed"], s["goal_met"]) for s in seeds] == [(0, True), (1, None)]
    assert seeds[0]["last_eval"] == {"LOOP": -6.0, "SAC": -9.0, "MBPO": -7.0, "PETS": -6.5}
    task = [s for s in summaries if "seeds" in s][0]
    assert task["seeds"] == [0, 1] and task["goal_met_on"] == [0] and task["judged_on"] == [0]
    assert task["common_seeds"] == [0]  # seed 1 has LOOP only
    assert task["mean_last_eval"] == {"LOOP": -6.0, "PETS": -6.5, "MBPO": -7.0, "SAC": -9.0}
    with pytest.raises(ValueError, match="two runs of LOOP on Reacher-v4 seed 0"):  # two configurations mixed
        summarize([str(first), str(first)])


@pytest.mark.parametrize("algo", ["LOOP", "PETS", "MBPO"])
def test_reacher_models_take_the_known_reward_unless_told_to_learn_it(algo):
    from benchmarks.loop import make_model
    from sb3_mbrl.envs.rewards import reacher_reward

    def reward_fn(model):
        return (getattr(model, "model_env", None) or model.policy.model_env).reward_fn

    assert reward_fn(make_model(algo, "Reacher-v4", 0, {})) is reacher_reward
    assert reward_fn(make_model(algo, "Reacher-v4", 0, {}, {"reward_fn": None})) is None  # --learned-reward


def test_pets_takes_another_zoo_file():
    from pathlib import Path

    from benchmarks.loop import make_model

    assert make_model("PETS", "Reacher-v4", 0, {}).model_train_freq == 50  # the paper's, zoo_configs/pets.yml
    cpu = make_model("PETS", "Reacher-v4", 0, {}, pets_zoo_file=Path("benchmarks/configs/pets_reacher_cpu.yml"))
    assert cpu.model_train_freq == 250 and cpu.policy.model_env.reward_fn is not None
