"""Turn pydantic and YAML errors into one-line messages that name field, value and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from simcore.errors import SimcoreError, close_matches

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every schema: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimcoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SimcoreError(f"{path}: malformed YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SimcoreError(f"{path}: malformed YAML: {exc}") from None


def _describe(err: dict, model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        parent = model
        for part in err["loc"][:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(part, str) else None
            ann = getattr(field, "annotation", None) if field else None
            parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if parent is None:
                break
        allowed = sorted(parent.model_fields) if parent else []
        hint = close_matches(str(err["loc"][-1]), allowed)
        tail = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown field '{loc}'{hint}{tail}"
    if kind == "missing":
        return f"missing required field '{loc}'"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"field '{loc}' = {value!r}: {msg}"


def validate(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise SimcoreError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        extra = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise SimcoreError(f"{source}: {_describe(first, model)}{extra}") from None
