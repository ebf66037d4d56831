"""The test run's warning filters: a DeprecationWarning attributed to our package fails the test; the third-party
ones that are ignored are ignored by message, so an unknown one still shows."""

from __future__ import annotations

import warnings

import pytest


def warn_from(module: str, message: str, category: type[Warning] = DeprecationWarning) -> None:
    """Raise a warning as if ``module`` had issued it (the filters match on the attributed module)."""
    warnings.warn_explicit(message, category, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module)


def test_a_deprecation_from_the_package_is_an_error() -> None:
    with pytest.raises(DeprecationWarning, match="old call"):
        warn_from("airflow_provider_mlpipe.operators.stage", "old call")
    with pytest.raises(DeprecationWarning, match="old call"):
        warn_from("airflow_provider_mlpipe.runtime.executors.trainer", "old call")


def test_a_third_party_deprecation_is_shown_not_raised() -> None:
    with warnings.catch_warnings(record=True) as caught:  # keeps the run's filters (pytest.warns would not)
        warn_from("some_library.module", "old call")
    assert [str(w.message) for w in caught] == ["old call"]


def test_known_third_party_deprecations_are_ignored_by_message() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warn_from("pathspec.pattern", "GitWildMatchPattern ('gitwildmatch') is deprecated. Use 'gitignore'.")
        warn_from("httplib2.auth", "'setName' deprecated - use 'set_name'")
    assert caught == []
