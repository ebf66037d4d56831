"""Finds the stage descriptions: every module of this package that defines ``DESCRIPTION``, plus the modules
named in ``MLPIPE_STAGE_MODULES`` (comma-separated), which is how a team adds its own stage without forking.

Both sides load the same registry: the Airflow side to validate specs and build operators, the runtime to run
executors. A stage request also names the module of its description, so a runtime finds a stage defined
outside this package even without the variable.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

from airflow_provider_mlpipe.stages.description import StageDescription

STAGE_MODULES_ENV = "MLPIPE_STAGE_MODULES"
_PACKAGE = "airflow_provider_mlpipe.stages"
_NOT_STAGES = {"description", "registry", "tabular"}  # shared declarations, not stages


class StageRegistry:
    def __init__(self) -> None:
        self._stages: dict[str, StageDescription] = {}
        self._modules: dict[str, str] = {}

    def add_module(self, module_name: str) -> StageDescription:
        """Import a module that defines ``DESCRIPTION`` and register that stage."""
        module = importlib.import_module(module_name)
        description = _description_of(module)
        known = self._stages.get(description.name)
        if known is not None and self._modules[description.name] != module.__name__:
            raise ValueError(
                f"The stage {description.name!r} of {module.__name__} is already defined by "
                f"{self._modules[description.name]}; stage names must be unique."
            )
        self._stages[description.name] = description
        self._modules[description.name] = module.__name__
        return description

    def load_builtin(self) -> None:
        package = importlib.import_module(_PACKAGE)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name not in _NOT_STAGES and not info.name.startswith("_"):
                self.add_module(f"{_PACKAGE}.{info.name}")

    def load_from_env(self) -> None:
        for name in os.environ.get(STAGE_MODULES_ENV, "").split(","):
            if name.strip():
                self.add_module(name.strip())

    def ordered(self) -> dict[str, StageDescription]:
        return dict(sorted(self._stages.items(), key=lambda item: (item[1].order, item[0])))

    def module_of(self, name: str) -> str:
        return self._modules[name]

    def get(self, name: str, module: str | None = None) -> StageDescription:
        if name not in self._stages and module:
            self.add_module(module)
        try:
            return self._stages[name]
        except KeyError:
            known = ", ".join(self.ordered())
            raise KeyError(f"Unknown stage {name!r}. Known stages are: {known}.") from None


def _description_of(module: ModuleType) -> StageDescription:
    description = getattr(module, "DESCRIPTION", None)
    if not isinstance(description, StageDescription):
        raise TypeError(f"The stage module {module.__name__} defines no DESCRIPTION = StageDescription(...).")
    return description
