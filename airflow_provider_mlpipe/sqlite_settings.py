"""Connection settings for Airflow's own database on SQLite, for the local setup (scripts/airflow-env.sh).

With a scheduler running, an Airflow CLI write such as ``airflow backfill create`` can meet a locked database;
sqlite3 gives up after 5 s by default. ``[database] sql_alchemy_connect_args`` names this dict so it waits.
"""

from __future__ import annotations

CONNECT_ARGS: dict[str, float] = {"timeout": 60.0}
