"""Airflow notifiers for a pipeline's events, built from the spec's ``notify:`` block.

``MlpipeNotifier`` is itself a ``BaseNotifier``, so it goes wherever Airflow takes notifiers: task and DAG
``on_*_callback``, the HITL operators' ``notifiers=``. When called it works out what happened (``message.py``),
builds the spec's notifiers for the event and hands each the callback context plus an ``mlpipe`` variable, so
their templated arguments render the message. A missed deadline reaches the same notifiers through
``deadline_missed``, an awaitable the triggerer runs (``DeadlineAlert`` with an ``AsyncCallback``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from airflow_provider_mlpipe.notifications.events import DEFAULT_MESSAGE_ARGS, notifier_path
from airflow_provider_mlpipe.notifications.message import describe
from airflow_provider_mlpipe.version_compat import (
    AsyncCallback,
    BaseNotifier,
    DeadlineAlert,
    DeadlineReference,
)

# BaseNotifier.__init__ takes the callback context; mlpipe passes it, so a spec may not.
RESERVED_ARGS = ("context",)


def notifier_class(name: str) -> type[BaseNotifier]:
    """The class a spec names (short name or dotted path); ImportError or TypeError say why it is unusable."""
    from airflow.sdk._shared.module_loading import import_string

    path = notifier_path(name)
    if "." not in path:
        raise ImportError(f"{name!r} is neither a known notifier nor a dotted path such as my_package.MyNotifier.")
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImportError(f"The notifier {path!r} cannot be imported: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseNotifier)):
        raise TypeError(f"{path!r} is not a BaseNotifier subclass (airflow.sdk.BaseNotifier).")
    return found


def constructor_arguments(cls: type) -> tuple[set[str] | None, set[str]]:
    """(the argument names the constructor accepts, None when it takes any; the names it requires).

    A constructor that passes ``**kwargs`` on (as the provider notifiers do to BaseNotifier) accepts what the
    next ``__init__`` in the MRO accepts, so an unknown argument is caught here and not when the event fires.
    """
    accepted: set[str] = set()
    required: set[str] | None = None
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if required is None:
            required = {
                p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
        accepted |= names
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return accepted - set(RESERVED_ARGS), required
    return None, required or set()


def message_defaults(cls: type, args: dict[str, Any]) -> dict[str, str]:
    """mlpipe's message for each message argument the class takes and the spec leaves out."""
    accepted, _ = constructor_arguments(cls)
    return {k: v for k, v in DEFAULT_MESSAGE_ARGS.items() if k not in args and accepted is not None and k in accepted}


def build_notifier(spec: dict[str, Any]) -> BaseNotifier:
    """One notifier from its spec entry ``{"notifier": ..., "args": {...}}``, message arguments filled in."""
    cls = notifier_class(spec["notifier"])
    args = dict(spec.get("args") or {})
    return cls(**{**message_defaults(cls, args), **args})


class MlpipeNotifier(BaseNotifier):
    """Sends one pipeline event to the notifiers the spec lists for it; does nothing when the event did not happen.

    :param event: one of ``notifications.events.EVENTS``.
    :param notifiers: the spec's entries for the event, ``[{"notifier": "SmtpNotifier", "args": {...}}]``.
    """

    def __init__(self, *, event: str, notifiers: Iterable[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event = event
        self.notifiers = [dict(n) for n in notifiers]

    def notify(self, context: Any) -> None:
        if (merged := self._context_with_message(context)) is None:
            return
        failures = []
        for spec in self.notifiers:
            try:
                build_notifier(spec)(merged)  # BaseNotifier.__call__ renders its templates, then sends
            except Exception as exc:  # one unreachable channel must not silence the others
                failures.append(self._failed(spec, exc))
        self._report(failures)

    async def async_notify(self, context: Any) -> None:
        if (merged := self._context_with_message(context)) is None:
            return
        failures = []
        for spec in self.notifiers:
            notifier = build_notifier(spec)
            notifier.context = merged
            try:
                try:
                    await notifier  # renders its templates with `context`, then its async_notify
                except NotImplementedError:  # a notifier with only a sync notify
                    await asyncio.to_thread(notifier, merged)
            except Exception as exc:
                failures.append(self._failed(spec, exc))
        self._report(failures)

    def _context_with_message(self, context: Any) -> dict[str, Any] | None:
        message = describe(self.event, context)
        if message is None:
            self.log.info("No %s in this context; nothing to send.", self.event)
            return None
        merged = dict(context)
        merged["mlpipe"] = message.template_context()
        self.log.info("Sending %s of run %s to %d notifier(s).", self.event, message.run_id, len(self.notifiers))
        return merged

    def _failed(self, spec: dict[str, Any], exc: Exception) -> str:
        self.log.exception("The %s notifier failed to send %s.", spec["notifier"], self.event)
        return f"{spec['notifier']}: {exc}"

    def _report(self, failures: list[str]) -> None:
        if failures:
            raise RuntimeError(f"Sending {self.event} failed for {len(failures)} notifier(s): {'; '.join(failures)}")


async def deadline_missed(*, pipeline: str, notifiers: list[dict[str, Any]], context: Any = None) -> None:
    """The DeadlineAlert callback: run by the triggerer when a run of ``pipeline`` misses its deadline."""
    await MlpipeNotifier(event="deadline_missed", notifiers=notifiers, context=context or {})


# ----- from a spec to Airflow arguments -------------------------------------------------------------------------
def event_notifiers(notify: Any, event: str) -> list[BaseNotifier]:
    """``[MlpipeNotifier]`` for an event of a spec's ``notify`` block (a NotifySpec), or [] when it lists none."""
    entries = getattr(notify, event)
    if not entries:
        return []
    return [MlpipeNotifier(event=event, notifiers=[e.model_dump(mode="json") for e in entries])]


def deadline_alert(pipeline: str, deadline: timedelta, notify: Any) -> DeadlineAlert:
    """The DAG's DeadlineAlert: a run not done ``deadline`` after it was queued sends ``deadline_missed``."""
    entries = [e.model_dump(mode="json") for e in notify.deadline_missed]
    callback = AsyncCallback(deadline_missed, kwargs={"pipeline": pipeline, "notifiers": entries})
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=deadline, callback=callback, name="mlpipe deadline"
    )
