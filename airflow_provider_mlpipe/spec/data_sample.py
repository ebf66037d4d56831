"""A small sample of a pipeline's input data, read on the Airflow side for ``mlpipe init`` and the lint.

The first ``SAMPLE_ROWS`` rows of one local CSV or Parquet file, read with pyarrow the way ExampleGen reads the
whole file (the same spellings of "missing", the same type inference), summed up per column: its type and its
distinct values. From a column, ``infer_kind`` proposes a label kind and ``kind_problem`` says why a declared kind
does not fit its values; both sides of the tabular built-ins (init and the lint) share these rules.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import yaml

from airflow_provider_mlpipe.stages.example_gen import DATE_PLACEHOLDERS, VERSION_PLACEHOLDER

SAMPLE_ROWS = 1000
# The spellings of "missing" ExampleGen's CSV reader knows (runtime/io/example_io.NULL_VALUES; a test holds the
# two equal, since the Airflow side cannot import the runtime).
CSV_NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A"]
MAX_CLASSES = 20  # a label with more distinct values than this is not a class label
CATEGORICAL_MAX_INTEGERS = 10  # an integer column with at most this many distinct values is a category
IDENTIFIER_MIN_ROWS = 50  # a column whose values all differ in at least this many rows is an identifier
_KEPT_VALUES = 50  # distinct values a summary keeps for messages and choices
_POSITIVE_WORDS = ("true", "1", "yes", "y", "t", "positive", "pos")
# each date placeholder as a glob of as many digits as it becomes
_PATTERN_GLOBS = {p: "[0-9]" * len(date(2000, 1, 1).strftime(f)) for p, f in DATE_PLACEHOLDERS.items()}

ColumnType = Literal["int", "float", "bool", "string", "temporal", "empty", "other"]
LabelKind = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Column:
    """One column of the sample: its type and, for the first distinct values, how often each occurs."""

    name: str
    type: ColumnType
    rows: int
    nulls: int
    distinct: int  # distinct non-null values in the sample
    counts: dict[Any, int] = field(default_factory=dict)  # value -> count, for up to _KEPT_VALUES values
    increasing: bool = False  # every value greater than the one before: a row number

    @property
    def values(self) -> list[Any]:
        """The kept values in order: numbers by size, text alphabetically."""
        return sorted(self.counts, key=lambda v: (0, v, "") if isinstance(v, int | float) else (1, 0, value_text(v)))

    def shown(self, limit: int = 8) -> str:
        """``B, M`` or ``1, 2, 3 and 39 more``: the values for a message."""
        values = [value_text(v) for v in self.values[:limit]]
        return ", ".join(values) + (f" and {self.distinct - len(values)} more" if self.distinct > len(values) else "")

    @property
    def identifier(self) -> bool:
        """Every value differs over many rows: an id or free text, not a feature."""
        filled = self.rows - self.nulls
        return filled >= IDENTIFIER_MIN_ROWS and self.distinct == filled and self.type in ("string", "int")


@dataclass(frozen=True)
class DataSample:
    path: str
    rows: int
    columns: dict[str, Column]


def value_text(value: Any) -> str:
    """A value as a spec writes it: ``true``, ``1`` (an integral float too), ``M``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def yaml_scalar(value: Any, flow: bool = True) -> str:
    """``value`` as YAML reads it back, inside a flow collection (``flow``) or as a block value: plain when YAML
    reads it back unchanged there, else double-quoted (``"yes"``, which YAML would read as true)."""
    if isinstance(value, bool | int | float):
        return repr(value) if isinstance(value, float) else value_text(value)
    text = str(value)
    try:
        plain = yaml.safe_load(f"[{text}]") == [text] if flow else yaml.safe_load(f"k: {text}") == {"k": text}
    except yaml.YAMLError:
        plain = False
    return text if plain and text == text.strip() and "#" not in text else json.dumps(text)


def first_local_file(pattern: str) -> str | None:
    """The first local file an input pattern matches, any span and version; None for a remote pattern."""
    if "://" in pattern:
        return None
    for placeholder, digits in _PATTERN_GLOBS.items():
        pattern = pattern.replace(placeholder, digits)
    pattern = pattern.replace(VERSION_PLACEHOLDER, "*")
    files = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    return files[0] if files else None


def _column(name: str, array: Any) -> Column:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind: ColumnType
    if pa.types.is_null(array.type) or array.null_count == len(array):
        kind = "empty"
    elif pa.types.is_boolean(array.type):
        kind = "bool"
    elif pa.types.is_integer(array.type):
        kind = "int"
    elif pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        kind = "float"
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        kind = "string"
    elif pa.types.is_temporal(array.type):
        kind = "temporal"
    else:
        kind = "other"
    counts: dict[Any, int] = {}
    distinct = 0
    increasing = False
    if kind in ("bool", "int", "float", "string"):
        filled = array.drop_null()
        if pa.types.is_floating(array.type):
            filled = filled.filter(pc.invert(pc.is_nan(filled)))
        tally = Counter(filled.to_pylist())
        distinct = len(tally)
        counts = dict(tally.most_common(_KEPT_VALUES))
        if kind == "int" and len(filled) > 1:
            increasing = bool(pc.all(pc.greater(filled[1:], filled[:-1])).as_py())
    return Column(name, kind, len(array), array.null_count, distinct, counts, increasing)


def read_sample(path: str, fmt: str, delimiter: str = ",", rows: int = SAMPLE_ROWS) -> DataSample:
    """The first ``rows`` rows of a local CSV or Parquet file. Raises ValueError naming the file and the problem."""
    import pyarrow as pa

    try:
        if fmt == "csv":
            table = _read_csv(path, delimiter, rows)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
            table = pa.Table.from_batches([batch]) if batch is not None else None
        else:
            raise ValueError(f"{path} is {fmt}; the sample is read from CSV or Parquet files only.")
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} cannot be read as {fmt}: {exc}") from None
    if table is None or table.num_rows == 0:
        raise ValueError(f"{path} has no rows.")
    columns = {name: _column(name, table.column(name).combine_chunks()) for name in table.column_names}
    return DataSample(path, table.num_rows, columns)


def _read_csv(path: str, delimiter: str, rows: int) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        path,
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
        convert_options=pcsv.ConvertOptions(null_values=CSV_NULL_VALUES, strings_can_be_null=True),
    )
    batches = []
    count = 0
    while count < rows:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid:  # a later block that the first block's types do not fit: the sample ends there
            break
        batches.append(batch)
        count += batch.num_rows
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return table.slice(0, rows)


_CACHE: dict[tuple[Any, ...], DataSample | None] = {}


def cached_sample(path: str, fmt: str, delimiter: str = ",") -> DataSample | None:
    """``read_sample`` once per file version (DAG parsing validates specs again and again); None when unreadable."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, fmt, delimiter)
    if key not in _CACHE:
        try:
            _CACHE[key] = read_sample(path, fmt, delimiter)
        except ValueError:
            _CACHE[key] = None  # a broken file is ExampleGen's to report, with the whole file at hand
    return _CACHE[key]


# ----- label kinds ------------------------------------------------------------------------------------------
def is_default_positive(value: Any) -> bool:
    """The positive class the built-in transform assumes without ``positive``: 1 or true."""
    return value_text(value).lower() in ("1", "true")


def _rarer(column: Column) -> Any:
    return min(column.counts.items(), key=lambda item: (item[1], value_text(item[0])))[0]


def infer_kind(column: Column) -> tuple[LabelKind, Any]:
    """(kind, positive) for a label column: two values are binary (``positive`` None when one is 1 or true; else
    the one that reads like yes, else the rarer), few integers or any text multiclass, other numbers regression.
    Raises ValueError when the column cannot be a label."""
    if column.type in ("temporal", "empty", "other"):
        what = {"temporal": "dates or times", "empty": "no values", "other": "values of a nested type"}[column.type]
        raise ValueError(f"The label {column.name!r} holds {what} in the sample; it cannot be a label.")
    if column.distinct < 2:
        raise ValueError(
            f"The label {column.name!r} has a single value ({column.shown()}) in the sample; a model needs two "
            "or more. Check the column, or give a file with more rows."
        )
    if column.distinct == 2:
        if any(is_default_positive(v) for v in column.counts):
            return "binary", None
        worded = [v for v in column.values if value_text(v).lower() in _POSITIVE_WORDS]
        return "binary", worded[0] if worded else _rarer(column)
    if column.type in ("string", "bool") or (column.type == "int" and column.distinct <= MAX_CLASSES):
        return "multiclass", None
    return "regression", None


def kind_problem(kind: str, positive: Any, column: Column, where: str) -> tuple[str, str] | None:
    """(``kind`` or ``positive``, the sentence) when a declared label kind does not fit the label's values in the
    sample, which ``where`` names; None when it fits."""
    name, values = column.name, column.shown()
    if kind == "binary":
        if column.distinct > 2:
            return "kind", (
                f"kind: binary needs two label values, but {name!r} has {column.distinct} in {where}: {values}. "
                "Use kind: multiclass, or derive a two-valued label in a transform module."
            )
        if positive is not None:
            if column.distinct and value_text(positive) not in {value_text(v) for v in column.counts}:
                quoted = ""
                if isinstance(positive, bool) and column.type == "string":
                    quoted = ' YAML reads an unquoted yes, no, on or off as true or false: quote it, e.g. "yes".'
                return "positive", (
                    f"positive: {value_text(positive)} is not a value of {name!r} in {where}: {values}.{quoted}"
                )
        elif column.distinct == 2 and not any(is_default_positive(v) for v in column.counts):
            return "positive", (
                f"The label {name!r} has the values {values} in {where}, none of them 1 or true; say which one is "
                f"the positive class, e.g. positive: {yaml_scalar(_rarer(column))}."
            )
    if kind == "regression" and column.type in ("string", "bool"):
        held = "text" if column.type == "string" else "true/false values"
        better = "binary" if column.distinct <= 2 else "multiclass"
        return "kind", (
            f"kind: regression needs numbers, but {name!r} holds {held} in {where}: {values}. Use kind: {better}."
        )
    if kind == "multiclass" and column.type == "float" and column.distinct > MAX_CLASSES:
        return "kind", (
            f"kind: multiclass needs a few classes, but {name!r} has {column.distinct} distinct decimal numbers in "
            f"{where}: {column.shown(5)}. Use kind: regression."
        )
    return None


def feature_kind(column: Column) -> tuple[Literal["numeric", "categorical"] | None, str]:
    """(``numeric``, ``categorical`` or None to leave the column out, why) for a proposed feature list: numbers
    are numeric, except integers with at most CATEGORICAL_MAX_INTEGERS distinct values; text and true/false are
    categorical; identifiers, row numbers, dates and empty columns are left out."""
    if column.type == "empty":
        return None, "is empty in the sample"
    if column.type == "temporal":
        return None, "holds dates or times, which the built-in transform does not take (a transform module can)"
    if column.type == "other":
        return None, "holds nested values, which the built-in transform does not take"
    if column.type == "int" and column.increasing and column.identifier:
        return None, "is a row number (every value greater than the one before)"
    if column.identifier and column.type == "string":
        return None, "differs in every row (an identifier or free text)"
    if column.type == "float":
        return "numeric", "decimal numbers"
    if column.type == "int":
        if column.distinct <= CATEGORICAL_MAX_INTEGERS:
            return "categorical", f"integers with {column.distinct} distinct values"
        return "numeric", "integers"
    return "categorical", "text" if column.type == "string" else "true/false"


def numeric_problem(column: Column) -> str | None:
    """Why a column cannot be a numeric (or bucketized) feature, or None."""
    if column.type == "string":
        return f"holds text ({column.shown(5)})"
    if column.type in ("temporal", "other"):
        return "holds dates, times or nested values"
    return None
