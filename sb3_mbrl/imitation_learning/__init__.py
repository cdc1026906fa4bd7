"""
Imitation learning through `imitation` 1.0.1: SB3 experts, demonstrations, BC and GAIL.

    from sb3_mbrl.imitation_learning import (
        train_expert, collect_demos, save_demos, load_demos, train_bc, train_gail, evaluate_against,
    )
    expert = train_expert("seals/CartPole-v0", seed=0)            # PPO from zoo_configs/ppo.yml
    demos = collect_demos(expert, "seals/CartPole-v0", n_episodes=10)
    save_demos(demos, "demos/")
    demos = load_demos("demos/", env_id="seals/CartPole-v0")     # checked against the env's spaces
    bc = train_bc(demos, "seals/CartPole-v0")                    # an SB3 PPO holding the cloned policy
    bc.save("bc_policy.zip")                                     # PPO.load("bc_policy.zip") loads it back
    print(evaluate_against(bc, "seals/CartPole-v0", expert_return=500.0))
"""
from sb3_mbrl.imitation_learning.common import (
    DemonstrationError,
    ImitationError,
    VariableHorizonError,
    check_fixed_horizon,
    make_venv,
)
from sb3_mbrl.imitation_learning.demos import check_demos_match_spaces, collect_demos, demo_stats, load_demos, save_demos
from sb3_mbrl.imitation_learning.evaluation import (
    Evaluation,
    RandomPolicy,
    evaluate,
    evaluate_against,
    normalised_score,
    random_return,
)
from sb3_mbrl.imitation_learning.experts import EXPERT_LEVELS, ExpertBelowLevelError, expert_level, load_model, train_expert
from sb3_mbrl.imitation_learning.progress import GAILProgress
from sb3_mbrl.imitation_learning.trainers import (
    bc_defaults,
    bc_settings,
    gail_config_for,
    clone_into,
    gail_bc_pretrain_default,
    gail_defaults,
    train_bc,
    train_gail,
)

__all__ = [
    "EXPERT_LEVELS",
    "DemonstrationError",
    "ExpertBelowLevelError",
    "Evaluation",
    "ImitationError",
    "RandomPolicy",
    "VariableHorizonError",
    "bc_defaults",
    "bc_settings",
    "check_demos_match_spaces",
    "check_fixed_horizon",
    "collect_demos",
    "demo_stats",
    "evaluate",
    "evaluate_against",
    "expert_level",
    "gail_config_for",
    "clone_into",
    "gail_bc_pretrain_default",
    "gail_defaults",
    "GAILProgress",
    "load_demos",
    "load_model",
    "make_venv",
    "normalised_score",
    "random_return",
    "save_demos",
    "train_bc",
    "train_expert",
    "train_gail",
]
