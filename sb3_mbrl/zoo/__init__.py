"""
The rl-zoo side of sb3_mbrl and the ``sb3-mbrl`` command, one job per module:

    cli.py            the command: its table of subcommands (imported when one runs) and the shipped help
    registry.py       our algorithms and samplers in rl-zoo's tables
    argv.py           rl-zoo's own argument parsers, and the defaults ``sb3-mbrl train`` adds
    env_ids.py        unknown ``--env`` ids as a usage error
    run.py            ``sb3-mbrl train`` / ``enjoy``: rl-zoo's train and enjoy with the above
    sigterm.py        SIGTERM handled like Ctrl-C while training
    progress.py       a line per evaluation episode and per enjoy episode of several envs
    search_spaces.py  Optuna samplers of PETS, MBPO, LOOP, REINFORCE (rl-zoo's format)
    storage.py        where a search keeps its study: SQLite by default, PostgreSQL to share
    search.py         ``train -optimize``: the study made and checked before rl-zoo runs it
    best.py           ``sb3-mbrl best``: a study's best trial as constructor arguments and YAML
    plots.py          ``sb3-mbrl plot``: learning curves of rl-zoo runs
    metric_plots.py   metrics of an SB3 ``progress.csv``

Nothing is imported here, so that ``sb3-mbrl --help`` answers without torch.
"""
