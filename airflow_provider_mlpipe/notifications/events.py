"""The events a pipeline can notify about, and the short names of Airflow's own notifier classes.

Kept free of Airflow imports: the spec model reads these names, and parsing a spec must stay light.
"""

from __future__ import annotations

# event -> what it means, as the README and `mlpipe lint` say it
EVENTS: dict[str, str] = {
    "gate_failed": "a gate (data validation or blessing) failed the run",
    "push_withheld": "a gate with policy skip, or the Pusher's span order, withheld the push; the run succeeds",
    "approval_pending": "the approval gate waits for a reviewer",
    "approval_timed_out": "the approval gate timed out and took its default outcome",
    "pushed": "the Pusher served a new model version",
    "rolled_back": "a rollback served an earlier model version again",
    "run_failed": "the DAG run failed",
    "deadline_missed": "the run was not done within the pipeline's deadline",
}

# The notifiers of Airflow's own providers, by class name; any other BaseNotifier is given by its dotted path.
SHORT_NAMES: dict[str, str] = {
    "SmtpNotifier": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
    "SlackWebhookNotifier": "airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier",
    "SlackNotifier": "airflow.providers.slack.notifications.slack.SlackNotifier",
}

# Message arguments mlpipe fills when the spec leaves them out: each names a variable of the `mlpipe` template
# context (see notifications/message.py), so a notifier renders the message itself.
DEFAULT_MESSAGE_ARGS: dict[str, str] = {
    "subject": "{{ mlpipe.subject }}",
    "html_content": "{{ mlpipe.html }}",
    "text": "{{ mlpipe.text }}",
    "message": "{{ mlpipe.text }}",
}


def notifier_path(name: str) -> str:
    """The dotted path of a notifier class given by short name or dotted path."""
    return SHORT_NAMES.get(name, name)
