"""Safe YAML loading that remembers the line of every key, expands ``${ENV}`` and applies environment overlays.

The YAML is composed into nodes by PyYAML's safe parser (the C one when available) and turned into plain Python
data by our own walk, so we see each node's mark and tag: any tag outside YAML's core schema (``!!python/object``,
``!custom``) is refused before anything is constructed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_mlpipe.overrides import deep_merge
from airflow_provider_mlpipe.spec.errors import (
    DATE_HELP,
    FieldPath,
    SpecError,
    SpecErrors,
    display_path,
    format_field,
    suggest,
)

ENVIRONMENTS = ("dev", "staging", "prod")
ENVIRONMENT_VARIABLE = "mlpipe_environment"  # Airflow Variable
ENVIRONMENT_ENV = "MLPIPE_ENVIRONMENT"

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge")}
_MAX_NODES = 200_000  # alias bombs ("billion laughs") stop here
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadedSpec:
    """One spec file as data, with the line of each key and the overlay that was applied."""

    path: Path
    data: dict[str, Any]
    lines: dict[FieldPath, int] = field(default_factory=dict)
    environment: str | None = None
    overlays: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return display_path(self.path)

    def line_of(self, path: FieldPath) -> int | None:
        """The line of the deepest key of ``path`` that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def error(self, path: FieldPath, message: str, *, at: FieldPath | None = None) -> SpecError:
        """An error about ``path``, on the line of ``at`` when the problem shows elsewhere (a missing key)."""
        return SpecError(self.display, self.line_of(path if at is None else at), format_field(path), message)


def default_airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or str(Path("~/airflow").expanduser())


def selected_environment(explicit: str | None = None) -> str | None:
    """The overlay to apply: explicit, else the Airflow Variable, else $MLPIPE_ENVIRONMENT, else ``[mlpipe]``."""
    if explicit:
        return explicit
    value: str | None = None
    try:
        from airflow_provider_mlpipe.version_compat import Variable

        value = Variable.get(ENVIRONMENT_VARIABLE, default=None)
    except Exception:  # no Airflow metadata reachable (the CLI, a bare interpreter)
        value = None
    value = value or os.environ.get(ENVIRONMENT_ENV)
    if not value:
        try:
            from airflow_provider_mlpipe.version_compat import conf

            value = conf.get("mlpipe", "environment", fallback="") or None
        except Exception:
            value = None
    return value.strip() if value else None


class _Composer:
    """Turns composed YAML nodes into Python data, recording the line of every key."""

    def __init__(self, display: str, loader: Any) -> None:
        self.display = display
        self.loader = loader
        self.lines: dict[FieldPath, int] = {}
        self.count = 0

    def fail(self, node: yaml.Node, path: FieldPath, message: str) -> SpecError:
        return SpecError(self.display, node.start_mark.line + 1, format_field(path), message)

    def build(self, node: yaml.Node, path: FieldPath, stack: frozenset[int]) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise self.fail(node, path, "The spec expands to too many values (an alias bomb?).")
        if node.tag not in _ALLOWED_TAGS:
            raise self.fail(
                node,
                path,
                f"The YAML tag {node.tag.replace(_CORE, '!!')!r} is not allowed. Specs are plain data: "
                "mappings, lists, strings, numbers, booleans, dates and null.",
            )
        if id(node) in stack:
            raise self.fail(node, path, "A YAML alias refers to itself.")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, stack | {id(node)})
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.lines.setdefault((*path, i), item.start_mark.line + 1)
                out.append(self.build(item, (*path, i), stack | {id(node)}))
            return out
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(node, path, f"Invalid value: {getattr(exc, 'problem', None) or exc}.") from None
        except (ValueError, OverflowError) as exc:  # a timestamp-shaped scalar that is no date, e.g. 2024-13-45
            what = "date" if node.tag == _CORE + "timestamp" else "value"
            help_text = f" {DATE_HELP}" if what == "date" else ""
            raise self.fail(node, path, f"Invalid {what} {node.value}: {exc}.{help_text}") from None

    def mapping(self, node: yaml.MappingNode, path: FieldPath, stack: frozenset[int]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":  # `<<: *defaults` fills keys the mapping does not set
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    merged = self.build(source, path, stack)
                    if not isinstance(merged, dict):
                        raise self.fail(value_node, path, "A `<<` merge needs a mapping.")
                    for k, v in merged.items():
                        out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, path, "Mapping keys must be plain strings.")
            key = self.build(key_node, path, stack)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise self.fail(key_node, (*path, key), f"The key {key!r} appears twice (first on line {seen[key]}).")
            seen[key] = line
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key), stack)
        return out


def parse_yaml(text: str, display: str) -> tuple[Any, dict[FieldPath, int]]:
    """YAML text -> (data, key lines). Raises SpecError on syntax errors and unsafe tags."""
    loader = _BaseLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise SpecError(display, line, "yaml", f"Invalid YAML syntax: {problem}.") from None
        except yaml.YAMLError as exc:
            raise SpecError(display, None, "yaml", f"Invalid YAML: {exc}.") from None
        if node is None:
            return None, {}
        composer = _Composer(display, loader)
        composer.lines[()] = node.start_mark.line + 1  # where the content starts: the line of a missing key
        data = composer.build(node, (), frozenset())
        return data, composer.lines
    finally:
        loader.dispose()


def expand_env(value: str, environ: Mapping[str, str]) -> str:
    """Expands ``${VAR}`` and ``${VAR:-default}`` (defaults may nest references); ``$$`` is a literal ``$``."""
    placeholder = "\x00"
    value = value.replace("$$", placeholder)
    while True:
        match = _ENV_REF.search(value)
        if match is None:
            break
        name, default = match.group(1), match.group(2)
        resolved = environ.get(name)
        if resolved is None and name == "AIRFLOW_HOME":
            resolved = default_airflow_home()
        if resolved is None:
            if default is None:
                raise KeyError(name)
            resolved = default
        value = value[: match.start()] + resolved.replace("$", placeholder) + value[match.end() :]
    return value.replace(placeholder, "$")


def _expand_tree(spec: LoadedSpec, data: Any, path: FieldPath, environ: Mapping[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: _expand_tree(spec, v, (*path, k), environ) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_tree(spec, v, (*path, i), environ) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        try:
            return expand_env(data, environ)
        except KeyError as exc:
            name = exc.args[0]
            raise spec.error(
                path,
                f"The environment variable {name} is not set. Set it, or give a default: ${{{name}:-value}}.",
            ) from None
    return data


def _apply_overlay(spec: LoadedSpec, overlays: dict[str, Any], environment: str | None) -> None:
    overlay = overlays.get(environment) if environment else None
    if not overlay:
        return
    prefix = ("environments", environment)
    for path, line in list(spec.lines.items()):
        if path[:2] == prefix and len(path) > 2:
            target = path[2:]
            if not isinstance(overlay_value(overlay, target), dict):
                # the overlay replaces this subtree: lines of the base's deeper keys no longer apply
                for old in [p for p in spec.lines if p[: len(target)] == target and len(p) > len(target)]:
                    spec.lines.pop(old, None)
            spec.lines[target] = line
    spec.data = deep_merge(spec.data, overlay)


def overlay_value(overlay: dict[str, Any], path: FieldPath) -> Any:
    value: Any = overlay
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def load_spec(
    path: str | Path,
    *,
    environment: str | None = None,
    environ: Mapping[str, str] | None = None,
    text: str | None = None,
) -> LoadedSpec:
    """Reads one spec file and applies the ``environment`` overlay (``None``: no overlay). Raises SpecErrors."""
    path = Path(path)
    display = display_path(path)
    try:
        try:
            raw = text if text is not None else path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(display, None, "<file>", f"The spec cannot be read: {exc}.") from None
        data, lines = parse_yaml(raw, display)
        spec = LoadedSpec(path=path, data={}, lines=lines, environment=environment)
        if data is None:
            raise SpecError(display, 1, "<spec>", "The spec is empty; it needs at least `name` and `stages`.")
        if not isinstance(data, dict):
            raise spec.error((), "The spec must be a mapping of keys such as `name` and `stages`.")
        overlays = data.pop("environments", None) or {}
        if not isinstance(overlays, dict):
            raise spec.error(("environments",), "`environments` must map dev, staging or prod to overrides.")
        for name, overlay in overlays.items():
            if name not in ENVIRONMENTS:
                raise spec.error(
                    ("environments", name),
                    f"Unknown environment {name!r}.{suggest(name, ENVIRONMENTS)} Use dev, staging or prod.",
                )
            if overlay is not None and not isinstance(overlay, dict):
                raise spec.error(("environments", name), "An environment overlay must be a mapping of overrides.")
            if isinstance(overlay, dict) and "environments" in overlay:
                raise spec.error(("environments", name, "environments"), "Overlays cannot nest `environments`.")
        if environment is not None and environment not in ENVIRONMENTS:
            # a typo in the Variable must not silently run the base config where an overlay was meant
            raise spec.error(
                ("environments",),
                f"The selected environment {environment!r} is not one of dev, staging, prod."
                f"{suggest(environment, ENVIRONMENTS)} Fix the Variable {ENVIRONMENT_VARIABLE}, "
                f"${ENVIRONMENT_ENV} or [mlpipe] environment.",
                at=(),
            )
        spec.data = data
        spec.overlays = tuple(overlays)
        _apply_overlay(spec, overlays, environment)
        spec.data = _expand_tree(spec, spec.data, (), os.environ if environ is None else environ)
        return spec
    except SpecError as exc:
        raise SpecErrors([exc]) from None
