"""``python -m airflow_provider_mlpipe.cli`` is the ``mlpipe`` command."""

import sys

from airflow_provider_mlpipe.cli.main import main

sys.exit(main())
