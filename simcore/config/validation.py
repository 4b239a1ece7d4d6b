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
    except UnicodeDecodeError:
        raise SimcoreError(f"{path}: not a UTF-8 text file") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        raise SimcoreError(f"{path}: malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise SimcoreError(f"{path}: malformed YAML: {' '.join(str(exc).split())}") from None


def yaml_kind(value: Any) -> str:
    """How a parsed YAML value reads to the person who wrote it."""
    if value is None:
        return "nothing (empty document)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


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
    msg = _EXPECTED.get(kind) or err["msg"]
    if kind == "literal_error" and "expected" in err.get("ctx", {}):
        msg = f"allowed: {err['ctx']['expected']}"
    elif msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be "):]
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"field '{loc}' = {show(value)}: {msg}"


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: true/false/null, quoted strings, numbers as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


# Pydantic's wording for type errors, said in the user's (YAML) terms.
_EXPECTED = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping of fields",
    "model_type": "expected a mapping of fields",
    "model_attributes_type": "expected a mapping of fields",
}


def validate(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise SimcoreError(f"{source}: expected a mapping of fields, got {yaml_kind(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        extra = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise SimcoreError(f"{source}: {_describe(first, model)}{extra}") from None
