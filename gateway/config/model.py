"""The base of every config model, apart from the schema so provider modules can use it.

Provider adapters define the models of their ``[upstream.<name>]`` tables; importing this module
never imports the schema or the providers, so neither can end up half-initialised.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class KeyProblem(ValueError):
    """A rule on a whole table that is about one key in it: the error names that key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
