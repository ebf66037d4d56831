"""Notifications on a pipeline's decisions (gates, pushes, rollbacks, failures, deadlines) through Airflow notifiers.

``events`` holds the names only and imports nothing from Airflow (the spec model reads it); ``notifier`` builds
the notifiers and ``message`` writes what they say.
"""
