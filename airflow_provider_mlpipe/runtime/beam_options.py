"""A Beam stage's pipeline options from its ``beam_args``, and one log line saying what it runs with.

``beam_args`` are the spec's ``beam.runner`` and ``beam.args`` as a list of flags. The log line names the runner
and every flag given, in order, so a stage's log shows where its data went; values that look like secrets
(passwords, tokens, keys, credentials, a URL's user info) are masked. Flags that no Beam options class knows are
kept, as Beam keeps them, and marked: most runners ignore them, so a misspelt option would otherwise pass unseen.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

log = logging.getLogger("mlpipe.runtime.beam")

MASK = "****"
DEFAULT_RUNNER = "DirectRunner"
# Option (or embedded parameter) names whose values are secrets. Over-masking a harmless value is the cheap error.
_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?|pwd|secret|token|key|credential|auth|cookie|session|sig(nature)?$|connection_?string",
    re.IGNORECASE,
)
# scheme://user:password@host -> the password goes; scheme://token@host -> the token goes.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*)(?P<password>:[^/@\s]*)?@")
# name=value pairs inside a value: query strings, connection strings, comma-separated service options, JSON.
# A value ends at ``?`` too: in ``https://host/p?token=x`` the ``https`` pair stops before the query.
_EMBEDDED_PAIR = re.compile(r"(?P<name>[A-Za-z_][\w.-]*)(?P<sep>\"?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^?&;,\s]+)")


def _mask_url_userinfo(match: re.Match[str]) -> str:
    if match.group("password") is not None:
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
    return f"{match.group('scheme')}{MASK}@"  # a lone user part is usually a token


def mask_value(name: str, value: str) -> str:
    """``value`` as it may appear in a log: all of it if ``name`` looks secret, else its embedded secrets."""
    if _SECRET_NAME.search(name.lstrip("-")):
        return MASK
    value = _URL_USERINFO.sub(_mask_url_userinfo, value)
    return _EMBEDDED_PAIR.sub(
        lambda m: f"{m.group('name')}{m.group('sep')}{MASK}" if _SECRET_NAME.search(m.group("name")) else m.group(0),
        value,
    )


def _flags(beam_args: Sequence[str]) -> list[tuple[str, str | None, list[str]]]:
    """``(name, value or None for a switch, the tokens it came from)`` per flag, read the way Beam reads them."""
    flags: list[tuple[str, str | None, list[str]]] = []
    index = 0
    while index < len(beam_args):
        token = beam_args[index]
        if not token.startswith("-"):
            flags.append(("", token, [token]))  # a stray value; Beam ignores it, the log shows it
            index += 1
        elif "=" in token:
            name, value = token.split("=", 1)
            flags.append((name, value, [token]))
            index += 1
        elif index + 1 < len(beam_args) and not beam_args[index + 1].startswith("-"):
            flags.append((token, beam_args[index + 1], [token, beam_args[index + 1]]))
            index += 2
        else:
            flags.append((token, None, [token]))
            index += 1
    return flags


def _unknown_tokens(beam_args: Sequence[str]) -> set[str]:
    """The tokens no registered Beam options class parses (Beam's own parser decides, abbreviations and all)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(exit_on_error=False)  # a bad value raises here instead of exiting the process
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    try:
        _, unknown = parser.parse_known_args(list(beam_args))
    except argparse.ArgumentError as exc:
        raise ValueError(f"Beam cannot parse an option of this stage: {exc}. Fix it in the spec's beam block.") from exc
    return set(unknown)


def _load_runner_options(runner: str) -> None:
    """A runner named by its module path may register its own options class on import (Beam's DaskRunner does)."""
    if "." not in runner:
        return
    try:
        importlib.import_module(runner.rsplit(".", 1)[0])
    except ImportError as exc:
        log.warning("The Beam runner %s cannot be imported here (%s); Beam will say why when the pipeline runs.",
                    runner, exc)  # fmt: skip


def describe(beam_args: Sequence[str], stage: str = "") -> str:
    """The log line: runner, then each flag as given, secrets masked, unknown flags marked."""
    flags = _flags(beam_args)
    runner = next((value for name, value, _ in reversed(flags) if name == "--runner"), None)
    if runner:
        _load_runner_options(runner)
    unknown = _unknown_tokens(beam_args)
    shown = []
    for name, value, tokens in flags:
        if name == "--runner":
            continue  # shown first
        text = name if value is None else f"{name}={mask_value(name, value)}" if name else mask_value("", value)
        if any(token in unknown for token in tokens):
            text += " (not a Beam option)"
        shown.append(text)
    who = f"{stage} runs" if stage else "Runs"
    runner_text = runner or f"{DEFAULT_RUNNER} (Beam's default)"
    options_text = " ".join(shown) if shown else "none"
    return f"{who} Beam on {runner_text} with options: {options_text}; everything else at Beam's defaults."


def pipeline_options(beam_args: Sequence[str], stage: str = "") -> PipelineOptions:
    """Beam ``PipelineOptions`` for a stage's ``beam_args``, after logging what the pipeline will run with."""
    from apache_beam.options.pipeline_options import PipelineOptions

    log.info("%s", describe(beam_args, stage))
    return PipelineOptions(list(beam_args))
