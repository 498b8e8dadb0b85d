"""JSON schemas for `JsonSchema`: reading one, and closing its objects to unlisted keys (strict).

JSON Schema's own default is `additionalProperties: true`: an object may carry any key its schema does
not list. Hosted structured outputs (OpenAI's strict mode), xgrammar (`strict_mode`) and outlines
close objects instead, and a model given an open object tends to invent keys (`"room_type_type"`)
rather than close it. `close_objects` writes `additionalProperties: false` into every object schema
that says nothing about extra keys (no `additionalProperties`, `patternProperties` or
`unevaluatedProperties`) and lists every key it requires. Whatever it generates is still valid under
the schema as written.

Objects whose keys come from several schemas are left as written: llguidance merges `allOf` branches,
and the siblings of `anyOf`/`oneOf`/`$ref`, key by key, so closing one part would drop the keys
another part lists. Everything under (or referenced from) such a merge keeps the schema's own default.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, InvalidArgument
from steering.jsonl import read_text

_SINGLE = ("additionalProperties", "items", "additionalItems", "contains", "not", "if", "then", "else",
           "propertyNames", "unevaluatedProperties", "unevaluatedItems")  # fmt: skip
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
_EXTRA_KEYS = ("additionalProperties", "patternProperties", "unevaluatedProperties")
_ANNOTATIONS = {"$ref", "anyOf", "oneOf", "title", "description", "$comment", "default", "examples", "$id",
                "$schema", "definitions", "$defs", "x-guidance"}  # fmt: skip


def load_schema(schema: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """A schema from a dict, JSON text, or a path to a .json file (errors name the position)."""
    if isinstance(schema, Path) or (
        isinstance(schema, str) and schema.endswith(".json") and Path(schema).is_file()
    ):
        path = Path(schema)
        try:
            schema = json.loads(read_text(path, what="JSON schema file"))
        except json.JSONDecodeError as error:
            raise InputFormatError(
                f"{path}:{error.lineno}:{error.colno}: the schema is not valid JSON ({error.msg})",
                received=str(path),
                fix="fix the JSON at that position",
            ) from error
    if isinstance(schema, str):
        text = schema
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidArgument(
                f"the schema is not valid JSON at line {error.lineno} column {error.colno} ({error.msg})",
                received=text[:120],
                fix="pass a dict or JSON text",
            ) from error
    if not isinstance(schema, Mapping):
        raise InvalidArgument(
            "a JSON schema must be an object", received=type(schema).__name__, fix="pass a dict"
        )
    return schema


def known_dialect(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` without a `$schema` that names a meta-schema other than a JSON Schema draft's.

    Such a `$schema` (Snowplow's Iglu schemas name their own, a draft-04 extension) would make
    llguidance look the meta-schema up, and it cannot fetch it; the keywords are standard, so they are
    read as the default dialect (Draft 2020-12) instead.
    """
    dialect = schema.get("$schema")
    if isinstance(dialect, str) and "json-schema.org/" not in dialect:
        return {key: value for key, value in schema.items() if key != "$schema"}
    return dict(schema)


def _children(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in _SINGLE:
        if isinstance(node.get(key), dict):
            yield node[key]
    for key in _LISTS:
        if isinstance(node.get(key), list):
            yield from (item for item in node[key] if isinstance(item, dict))
    for key in _MAPS:
        if isinstance(node.get(key), dict):
            yield from (item for item in node[key].values() if isinstance(item, dict))


def _target(root: dict[str, Any], ref: object) -> dict[str, Any] | None:
    """A local `#/…` reference's schema, or None (remote, or not found)."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _merges(node: dict[str, Any]) -> bool:
    """Whether this schema's keys are merged with other schemas' (allOf, or a combinator with siblings)."""
    if "allOf" in node:
        return True
    combined = any(key in node for key in ("anyOf", "oneOf", "$ref"))
    return combined and any(key not in _ANNOTATIONS for key in node)


def _left_open(root: dict[str, Any]) -> set[int]:
    """ids of the schemas inside a merge: the merging schemas and everything reachable from them."""
    seen: set[int] = set()
    roots: list[dict[str, Any]] = []
    stack = [root]
    while stack:  # find the merges
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _merges(node):
            roots.append(node)
        stack.extend(_children(node))
    open_ids: set[int] = set()
    stack = roots
    while stack:  # everything under them, following local references
        node = stack.pop()
        if id(node) in open_ids:
            continue
        open_ids.add(id(node))
        stack.extend(_children(node))
        target = _target(root, node.get("$ref"))
        if target is not None:
            stack.append(target)
    return open_ids


def _is_object_schema(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return "object" in kinds or "properties" in node or "required" in node


def _lists_its_required_keys(node: dict[str, Any]) -> bool:
    """A key `required` but not in `properties` is an extra key: closing the object would refuse it."""
    listed = node.get("properties", {})
    required = node.get("required", [])
    return isinstance(listed, dict) and isinstance(required, list) and all(k in listed for k in required)


def close_objects(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with `additionalProperties: false` on every object schema that leaves extra
    keys unsaid and is not part of a merge (see the module docstring)."""
    root: dict[str, Any] = copy.deepcopy(dict(schema))
    left_open = _left_open(root)
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        closable = _is_object_schema(node) and _lists_its_required_keys(node)
        if id(node) not in left_open and closable and not any(k in node for k in _EXTRA_KEYS):
            node["additionalProperties"] = False
        stack.extend(_children(node))
    return root
