"""Checks of the ``notify:`` block and ``deadline``: notifier classes that import and are BaseNotifiers, and
arguments their constructors accept, each error on the spec's line and field.

Importing a notifier class is cheap and Airflow-side (the SMTP and Slack providers), so parsing may do it.
"""

from __future__ import annotations

from airflow_provider_mlpipe.notifications.events import DEFAULT_MESSAGE_ARGS, EVENTS, SHORT_NAMES
from airflow_provider_mlpipe.spec.errors import SpecError, suggest
from airflow_provider_mlpipe.spec.loader import LoadedSpec
from airflow_provider_mlpipe.spec.model import NotifierSpec, PipelineSpec


def _entry_errors(loaded: LoadedSpec, event: str, index: int, entry: NotifierSpec) -> list[SpecError]:
    from airflow_provider_mlpipe.notifications.notifier import RESERVED_ARGS, constructor_arguments, notifier_class

    where = ("notify", event, index)
    try:
        cls = notifier_class(entry.notifier)
    except (ImportError, TypeError) as exc:
        hint = ""
        if "." not in entry.notifier:
            hint = f"{suggest(entry.notifier, SHORT_NAMES)} Known short names: {', '.join(SHORT_NAMES)}."
        return [loaded.error((*where, "notifier"), f"{exc}{hint}")]
    accepted, required = constructor_arguments(cls)
    errors = []
    for key in entry.args:
        if key in RESERVED_ARGS:
            errors.append(loaded.error((*where, "args", key), f"{key!r} is passed by Airflow; leave it out."))
        elif accepted is not None and key not in accepted:
            message = f"{cls.__name__} takes no argument {key!r}.{suggest(key, accepted)} It takes: "
            errors.append(loaded.error((*where, "args", key), message + ", ".join(sorted(accepted)) + "."))
    if errors:  # a misspelled argument is usually the required one: one error, not two
        return errors
    if missing := sorted(required - set(entry.args) - set(DEFAULT_MESSAGE_ARGS)):
        names = ", ".join(repr(m) for m in missing)
        errors.append(loaded.error((*where, "args"), f"{cls.__name__} needs {names}.", at=(*where, "notifier")))
    return errors


def notify_errors(loaded: LoadedSpec, spec: PipelineSpec) -> list[SpecError]:
    errors = []
    for event in EVENTS:
        for index, entry in enumerate(getattr(spec.notify, event)):
            errors += _entry_errors(loaded, event, index, entry)
    if spec.deadline is not None and not spec.notify.deadline_missed:
        errors.append(
            loaded.error(
                ("deadline",), "A deadline needs someone to tell: list notifiers under notify.deadline_missed."
            )
        )
    if spec.deadline is None and spec.notify.deadline_missed:
        errors.append(
            loaded.error(
                ("notify", "deadline_missed"),
                "notify.deadline_missed never fires without a deadline; set e.g. `deadline: 2h` on the pipeline.",
            )
        )
    return errors
