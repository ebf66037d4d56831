"""The ``mlpipe`` command: one module per subcommand, listed once in ``main.SUBCOMMANDS``.

Adding a subcommand ``prune``: write ``cli/prune.py`` with ``SUBCOMMAND = Subcommand(name, help, add_arguments, run)``,
where ``run(args)`` returns the exit code, then import it in ``cli/main.py`` and add ``prune.SUBCOMMAND`` to
``SUBCOMMANDS``. Keep heavy imports (Airflow, pydantic models) inside ``run`` so ``mlpipe --help`` stays fast.
"""
