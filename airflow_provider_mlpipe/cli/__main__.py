"""``python -m airflow_provider_mlpipe.cli`` is the ``mlpipe`` command."""

import sys

from airflow_provider_mlpipe.cli.main import main

if __name__ == "__main__":  # importing this module (e.g. walking the package) must not run the command
    sys.exit(main())
