"""Turn pydantic and YAML errors into one-line messages that name field, value and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from simcore.errors import SimcoreError, clip, close_matches

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every schema: unknown keys are errors, values are not coerced silently, and no
    float field takes .inf or .nan."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


MAX_FILE_BYTES = 16 * 2**20  # YAML, JSON and request files larger than this are refused
MAX_DEPTH = 32  # nesting of mappings and lists in one YAML document


class Refused(yaml.MarkedYAMLError):
    """A YAML construct simcore refuses (aliases, duplicate keys, deep nesting), with its position."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases (a 1 KB alias bomb expands to gigabytes), with duplicate keys as
    errors (not 'the last one wins') and nesting bounded (no RecursionError)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise Refused(problem=f"alias *{event.anchor} is not allowed (anchors and aliases are refused; "
                                  f"write the value out)", problem_mark=event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise Refused(problem=f"nested deeper than {MAX_DEPTH} levels",
                          problem_mark=self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, key.value) in seen:
                        raise Refused(problem=f"duplicate key {show(key.value)} (each key may appear once)",
                                      problem_mark=key.start_mark)
                    seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document with simcore's loader (raises yaml.YAMLError, Refused for refused input)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except ValueError as exc:  # an integer past Python's digit limit
        raise Refused(problem=clip(str(exc))) from None
    finally:
        loader.dispose()


def read_text(path: Path, what: str = "text") -> str:
    """A user file as text: UTF-8 (a byte-order mark is dropped), at most MAX_FILE_BYTES."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SimcoreError(f"{path}: {size:,} bytes; {what} files are limited to {MAX_FILE_BYTES:,} bytes")
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SimcoreError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start:exc.start + 1]
        raise SimcoreError(f"{path}: not a UTF-8 text file (byte {exc.start}: {byte!r})") from None


def read_yaml(path: Path) -> Any:
    if path.is_dir():
        raise SimcoreError(f"{path}: is a folder; give a YAML file")
    text = read_text(path, "YAML")
    try:
        return load_yaml_text(text)
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
    return clip(repr(value))


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
