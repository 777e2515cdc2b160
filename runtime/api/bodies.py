"""The request-body base of the TARX families (seeds 000's key routes, 001, 003, 004).

Unknown fields are refused (a typo is an error, not a silent default) and both the wire's camelCase aliases and
the Python names are accepted. NaN and infinite numbers (Python's JSON parser accepts `NaN` and `Infinity`) and
NUL characters are refused anywhere in a body: no stored limit may be infinite and no stored name or command may
hide a NUL. The OpenAI family's bodies differ on purpose: see runtime/inference/schemas.py.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _refuse_unstorable(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'}: NaN and infinite numbers are not accepted")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{path or 'value'}: NUL characters are not accepted")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key, path)
            _refuse_unstorable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_unstorable(item, f"{path}[{i}]")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        _refuse_unstorable(data, "")
        return data
