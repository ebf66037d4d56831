"""Spec errors that name the file, the line and the field, in sentences a data engineer can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

FieldPath = tuple[str | int, ...]
DATE_HELP = "Use a date such as 2024-01-01 or a timestamp such as 2024-01-01T03:00:00 (UTC unless it names a zone)."


def format_field(path: Sequence[str | int]) -> str:
    """``("stages", "trainer", "params", "metrics", 0)`` -> ``stages.trainer.params.metrics[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<spec>"


def suggest(word: str, choices: Iterable[str]) -> str:
    """A " Did you mean 'x'?" suffix, or an empty string when nothing is close. Case does not count: "auc" finds
    "AUC"."""
    options = {c.lower(): c for c in sorted(set(choices), reverse=True)}  # the first spelling wins a tie
    lowered = str(word).lower()
    close = difflib.get_close_matches(lowered, sorted(options), n=1, cutoff=0.6)
    if not close:  # abbreviations and long forms: "prod" for "production", "eval" for "evaluation"
        close = [c for c in sorted(options) if len(c) >= 3 and (lowered.startswith(c) or c.startswith(lowered))][:1]
    return f" Did you mean {options[close[0]]!r}?" if close else ""


@dataclass
class SpecError(Exception):
    """One problem in one spec file."""

    file: str
    line: int | None
    field: str
    message: str

    def __post_init__(self) -> None:
        super().__init__(self.format())

    def format(self) -> str:
        """``file:line: field: message`` — the lint output, also used in Airflow's import errors."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"

    def __str__(self) -> str:
        return self.format()


class SpecErrors(Exception):
    """All problems found in one spec file (usually one)."""

    def __init__(self, errors: Sequence[SpecError], path: Path | None = None) -> None:
        self.errors = list(errors)
        self.path = path  # the spec file, for keying Airflow import errors
        super().__init__("\n".join(e.format() for e in self.errors))

    @property
    def file(self) -> str:
        return self.errors[0].file if self.errors else ""


def display_path(path: str | Path) -> str:
    """A path as users typed it: relative to the working directory when possible."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
