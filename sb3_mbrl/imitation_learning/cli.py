"""``sb3-mbrl imitate expert|demos|bc|gail``: the imitation-learning pipeline from the command line."""
import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from sb3_mbrl.common.files import publish, read_json, staging_dir, write_json_atomic
from sb3_mbrl.imitation_learning.common import ImitationError

EXPERT_FILE = "expert.zip"
DEMOS_DIR = "demos"
POLICY_FILES = {"bc": "bc_policy.zip", "gail": "gail_policy.zip"}
SUMMARY_FILE = "summary.json"
GAIL_LOG_DIR = "gail_log"

DESCRIPTION = """Imitation learning with `imitation` 1.0.1, one output folder per task:
  expert  train an SB3 expert (PPO or SAC, hyperparameters from zoo_configs)  -> expert.zip
  demos   roll out the expert for N episodes (imitation.data.rollout)           -> demos/
  bc      behavioural cloning from the demos (imitation BC)                     -> bc_policy.zip
  gail    GAIL from the demos (PPO generator, normalised BasicRewardNet)        -> gail_policy.zip
Every command also merges its settings and evaluation into summary.json. Policies are SB3 model
zips: load them with PPO.load / SAC.load (or sb3_mbrl.imitation_learning.load_model).
Outputs appear only when the whole command succeeded."""


def default_output_dir(env_id: str) -> Path:
    return Path("imitation") / env_id.replace("/", "-")


def _min_return_arg(value: str):
    """``--min-return``: ``auto``, ``none`` or a number."""
    if value.lower() in ("auto", "none"):
        return None if value.lower() == "none" else "auto"
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'none' or a number, got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sb3-mbrl imitate", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--env", required=True, help="fixed-horizon task, e.g. seals/CartPole-v0 or Pendulum-v1")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--output-dir", "-o", type=Path, default=None, help="default: imitation/<env id>")
        p.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes (evaluate_policy)")
        p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for small MLPs)")
        p.add_argument("--device", default="auto")

    p = sub.add_parser("expert", help="train an SB3 expert from zoo_configs")
    common(p)
    p.add_argument("--algo", default=None, help="ppo, sac, ... (default: sac for Box actions, ppo otherwise)")
    p.add_argument("--expert-steps", type=int, default=None, help="steps per round (default: n_timesteps of the zoo config)")
    p.add_argument("--min-return", type=_min_return_arg, default="auto",
                   help="mean return the expert must reach (default 'auto': CartPole 500 / 475, Pendulum -200; 'none': no check)")
    p.add_argument("--max-rounds", type=int, default=3, help="training rounds of --expert-steps at most while below --min-return")
    p.add_argument("--allow-weak-expert", action="store_true", help="keep an expert below --min-return (recorded in summary.json)")

    p = sub.add_parser("demos", help="collect expert demonstrations")
    common(p)
    p.add_argument("--expert", type=Path, default=None, help=f"SB3 model zip (default: OUTPUT_DIR/{EXPERT_FILE})")
    p.add_argument("--expert-algo", default=None, help="algorithm of --expert (guessed from the zip by default)")
    p.add_argument("--n-episodes", type=int, default=10)
    p.add_argument("--stochastic", action="store_true", help="sample expert actions instead of its deterministic ones")
    p.add_argument("--allow-variable-horizon", action="store_true", help="accept tasks whose episodes end early")
    p.add_argument("--allow-weak-expert", action="store_true",
                   help="keep demonstrations whose mean return is below the task's expert level")

    for name, help_text in (("bc", "behavioural cloning"), ("gail", "GAIL")):
        p = sub.add_parser(name, help=help_text)
        common(p)
        p.add_argument("--demos", type=Path, default=None, help=f"demonstrations folder (default: OUTPUT_DIR/{DEMOS_DIR})")
        p.add_argument("--n-episodes", type=int, default=None, help="use the first N demonstration episodes (default: all)")
        p.add_argument("--expert", type=Path, default=None,
                       help=f"expert for the normalised score (default: OUTPUT_DIR/{EXPERT_FILE} if any, else the demos' return)")
        if name == "bc":
            p.add_argument("--bc-batches", type=int, default=None,
                           help="gradient steps (default: 10,000 for Box actions, 3,000 otherwise; trainers.bc_defaults)")
            p.add_argument("--bc-net-arch", type=int, nargs="+", default=None,
                           help="policy hidden layers (default: 256 256 for Box actions, 64 64 otherwise)")
            p.add_argument("--batch-size", type=int, default=64)
        else:
            p.add_argument("--gail-steps", type=int, default=300_000, help="generator environment steps")
            p.add_argument("--gail-config", type=Path, default=None,
                           help='JSON of overrides, {"gen": {PPO / n_envs}, "disc": {GAIL}}, or such entries keyed by '
                                'env id (as benchmarks/configs/imitation_gail.json); defaults: trainers.gail_defaults')
            p.add_argument("--n-disc-updates-per-round", type=int, default=None, help="discriminator updates per round")
            p.add_argument("--disc-lr", type=float, default=None, help="discriminator Adam learning rate")
            p.add_argument("--demo-batch-size", type=int, default=None, help="expert transitions per discriminator update")
            p.add_argument("--bc-pretrain-batches", type=int, default=None,
                           help="BC steps on the demos that start the generator (0: from scratch; default: "
                                "10,000 for Box actions, 0 otherwise)")
            p.add_argument("--verbose", type=int, default=1,
                           help="1: a progress table per round (also written to OUTPUT_DIR/gail_log/progress.csv); 0: none")
            p.add_argument("--allow-variable-horizon", action="store_true", help="accept tasks whose episodes end early")
    return parser


def _load_summary(output_dir: Path, env_id: str) -> Dict[str, Any]:
    summary = read_json(output_dir / SUMMARY_FILE) or {}
    if summary.get("env_id", env_id) != env_id:
        raise ImitationError(f"{output_dir} holds results for {summary['env_id']}, not {env_id}: choose another --output-dir")
    summary["env_id"] = env_id
    return summary


def _expert_return(args, output_dir: Path, summary: Dict[str, Any], demos) -> Dict[str, Any]:
    """Expert reference return: evaluate the expert zip if there is one, else the demos' mean return."""
    from sb3_mbrl.imitation_learning.demos import demo_stats
    from sb3_mbrl.imitation_learning.evaluation import evaluate
    from sb3_mbrl.imitation_learning.experts import load_model

    path = args.expert or output_dir / EXPERT_FILE
    if args.expert is not None or path.is_file():
        mean, _ = evaluate(load_model(path, device=args.device), args.env, n_episodes=args.eval_episodes, seed=args.seed)
        return {"expert_return": mean, "expert_return_source": str(path)}
    return {"expert_return": demo_stats(demos)["return_mean"], "expert_return_source": "demonstrations"}


def _gail_overrides(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """GAIL's overrides: ``--gail-config`` (for ``--env`` when keyed by env id), then the single flags."""
    from sb3_mbrl.imitation_learning.trainers import gail_config_for

    if args.gail_config is not None and not args.gail_config.is_file():
        raise ImitationError(f"No GAIL config at {args.gail_config}")
    overrides = gail_config_for(read_json(args.gail_config) if args.gail_config else {}, args.env)
    disc = overrides["disc"]
    if args.n_disc_updates_per_round is not None:
        disc["n_disc_updates_per_round"] = args.n_disc_updates_per_round
    if args.demo_batch_size is not None:
        disc["demo_batch_size"] = args.demo_batch_size
    if args.disc_lr is not None:
        disc["disc_opt_kwargs"] = {**disc.get("disc_opt_kwargs", {}), "lr": args.disc_lr}
    return overrides


def run(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run one ``imitate`` command; returns the summary entry it wrote."""
    args = _parser().parse_args(argv)
    from sb3_mbrl.imitation_learning import demos as demos_mod
    from sb3_mbrl.imitation_learning import evaluation, experts, trainers

    trainers.set_torch_threads(args.threads)
    output_dir = args.output_dir or default_output_dir(args.env)
    summary = _load_summary(output_dir, args.env)
    start = time.time()
    entry: Dict[str, Any] = {"seed": args.seed}
    with staging_dir(output_dir) as stage:
        if args.command == "expert":
            algo = (args.algo or experts.default_expert_algo(args.env)).lower()
            _, zoo_steps, _, _ = experts.expert_kwargs(algo, args.env)
            level = experts.resolve_min_return(args.env, args.min_return)
            model = experts.train_expert(
                args.env, algo=algo, timesteps=args.expert_steps, seed=args.seed, device=args.device,
                min_return=level, max_rounds=args.max_rounds, on_miss="warn" if args.allow_weak_expert else "raise",
            )
            model.save(stage / EXPERT_FILE)
            mean, std = evaluation.evaluate(model, args.env, n_episodes=args.eval_episodes, seed=args.seed)
            rand, _ = evaluation.random_return(args.env, n_episodes=args.eval_episodes, seed=args.seed)
            entry.update(algo=algo, timesteps=model.num_timesteps, steps_per_round=args.expert_steps or zoo_steps,
                         path=EXPERT_FILE, mean_return=mean, std_return=std, random_return=rand, expert_level=level,
                         expert_level_met=None if level is None else bool(mean >= level))
        elif args.command == "demos":
            path = args.expert or output_dir / EXPERT_FILE
            if not Path(path).is_file():
                raise ImitationError(
                    f"No expert at {path}: train one with `sb3-mbrl imitate expert --env {args.env}` or pass --expert"
                )
            expert = experts.load_model(path, algo=args.expert_algo, device=args.device)
            trajs = demos_mod.collect_demos(
                expert, args.env, args.n_episodes, seed=args.seed, deterministic=not args.stochastic,
                allow_variable_horizon=args.allow_variable_horizon,
            )
            stats = demos_mod.demo_stats(trajs)
            level = experts.expert_level(args.env)
            if level is not None and stats["return_mean"] < level and not args.allow_weak_expert:
                raise ImitationError(
                    f"The demonstrations of {path} have a mean return of {stats['return_mean']:.1f}, below the expert level "
                    f"{level:g} of {args.env}: imitating them would not learn the task. Train a better expert "
                    "(`sb3-mbrl imitate expert` retrains until the level) or pass --allow-weak-expert"
                )
            demos_mod.save_demos(trajs, stage / DEMOS_DIR)
            entry.update(stats, path=DEMOS_DIR, expert=str(path), deterministic=not args.stochastic, expert_level=level)
        else:
            demos_path = args.demos or output_dir / DEMOS_DIR
            trajs = demos_mod.load_demos(demos_path, env_id=args.env, n_episodes=args.n_episodes)
            from sb3_mbrl.imitation_learning.common import make_env

            probe = make_env(args.env)
            action_space = probe.action_space
            probe.close()
            if args.command == "bc":
                settings = trainers.bc_settings(action_space, args.bc_batches, args.bc_net_arch)
                model = trainers.train_bc(trajs, args.env, seed=args.seed, batch_size=args.batch_size,
                                          device=args.device, **settings)
                entry.update(n_batches=settings["n_batches"], net_arch=list(settings["net_arch"]), batch_size=args.batch_size)
            else:
                overrides = _gail_overrides(args)
                bc_pretrain = args.bc_pretrain_batches
                if bc_pretrain is None:
                    bc_pretrain = trainers.gail_bc_pretrain_default(action_space)
                model = trainers.train_gail(trajs, args.env, timesteps=args.gail_steps, seed=args.seed,
                                            gen_kwargs=overrides["gen"], disc_kwargs=overrides["disc"],
                                            bc_pretrain_batches=bc_pretrain,
                                            allow_variable_horizon=args.allow_variable_horizon, device=args.device,
                                            log_dir=stage / GAIL_LOG_DIR, verbose=args.verbose)
                entry.update(gail_steps=args.gail_steps, gail_overrides=overrides, bc_pretrain_batches=bc_pretrain,
                             progress=f"{GAIL_LOG_DIR}/progress.csv")
            model.save(stage / POLICY_FILES[args.command])
            reference = _expert_return(args, output_dir, summary, trajs)
            result = evaluation.evaluate_against(
                model, args.env, reference["expert_return"], n_episodes=args.eval_episodes, seed=args.seed
            )
            entry.update(result.to_dict(), **reference, demos=str(demos_path), n_demo_episodes=len(trajs),
                         path=POLICY_FILES[args.command], load_with="stable_baselines3.PPO.load")
        entry["wall_s"] = round(time.time() - start, 1)
        summary[args.command] = entry
        write_json_atomic(stage / SUMMARY_FILE, summary)
        publish(stage, output_dir)
    return entry


def main(argv: Optional[List[str]] = None) -> None:
    import json

    try:
        entry = run(argv)
    except ImitationError as error:
        print(f"sb3-mbrl imitate: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(entry, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
