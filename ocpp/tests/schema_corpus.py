#!/usr/bin/env python3
"""Build a corpus of OCPP 2.0.1 payloads with verdicts from the reference validator.

For every official OCA schema (read from the installed PyPI package `ocpp`), this
builds valid instances and single-fault mutations of them, and asks jsonschema's
Draft6Validator (with FormatChecker; `rfc3339-validator` checks date-time) for
the verdict. It prints JSON lines to stdout:

    {"schemas": [...all schema names...]}                     (first line)
    {"action": "BootNotification", "direction": "Request", "case": "...",
     "payload": ..., "valid": false, "keyword": "required", "path": "/chargingStation"}

`keyword` and `path` (JSON pointer) are those of jsonschema's best_match error;
both are null for valid payloads. `ocpp/tests/schema_equivalence.rs` runs this
script and checks that `ocpp::v201::validate` agrees on every line.

Each mutation also states the verdict it is built to produce; the script fails
if jsonschema disagrees, so a corpus bug cannot quietly turn into valid cases.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

try:
    import ocpp
    from jsonschema import Draft6Validator, FormatChecker
    from jsonschema.exceptions import best_match
except ImportError as e:  # pragma: no cover - reported to the Rust test
    sys.exit(f"schema_corpus.py needs the Python packages `ocpp`, `jsonschema` and "
             f"`rfc3339-validator`: {e}")

try:
    import rfc3339_validator  # noqa: F401  (without it FormatChecker skips date-time)
except ImportError:
    sys.exit("schema_corpus.py needs `rfc3339-validator`, or date-time is not checked")

SCHEMA_DIR = Path(os.path.dirname(ocpp.__file__)) / "v201" / "schemas"

ARRAY_CAP = 4  # arrays "at maxItems" hold at most this many items
UNBOUNDED_ARRAY_LEN = 2

DT_MIN = "2024-01-02T03:04:05Z"
DT_MAX = "2024-02-29T23:59:59.123456+05:30"
DT_VALID_EDGE = [
    "2024-01-01t00:00:00z",
    "2024-01-01T00:00:00Z\n",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59.999999999999-23:59",
    "2000-02-29T12:00:00-00:00",
    "2024-06-30T23:59:59.5+14:00",
]
DT_INVALID = [
    "2024-13-01T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:60:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00.Z",
    "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00+0100",
    "2024-01-01",
    "",
    "yesterday",
    " 2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00Z\n\n",
    "\u0662024-01-01T00:00:00Z",
]


def deref(node: dict, root: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root["definitions"][name]
    return node


def kind(node: dict) -> str:
    meaningful = {k for k in node if k not in ("description", "javaType", "default", "comment")}
    if not meaningful:
        return "any"
    if "enum" in node:
        return "enum"
    if node.get("format") == "date-time":
        return "datetime"
    return node["type"]


def text_of(n: int) -> str:
    """A string of exactly n code points, mostly outside ASCII (maxLength counts code points)."""
    return ("Ωa€" * n)[:n]


def build(node: dict, root: dict, mode: str):
    """An instance of `node`: mode is 'min' (required only, arrays at minItems),
    'max' (everything, arrays at maxItems capped) or 'max_arrays_min'."""
    node = deref(node, root)
    k = kind(node)
    if k == "any":
        return "x" if mode == "min" else {"vendor": [1, 2.5, None, "x", {"k": True}]}
    if k == "enum":
        return node["enum"][0] if mode == "min" else node["enum"][-1]
    if k == "datetime":
        return DT_MIN if mode == "min" else DT_MAX
    if k == "string":
        if "maxLength" in node:
            return "x" if mode == "min" else text_of(node["maxLength"])
        return "x" if mode == "min" else "free text ✓"
    if k == "integer":
        if mode == "min":
            return int(node.get("minimum", 1))
        return int(node.get("maximum", 2147483647))
    if k == "number":
        if mode == "min":
            return node.get("minimum", 0.5)
        return node.get("maximum", 1234.5678)
    if k == "boolean":
        return mode != "min"
    if k == "array":
        if mode == "max":
            n = min(node.get("maxItems", UNBOUNDED_ARRAY_LEN), ARRAY_CAP)
        else:
            n = node.get("minItems", 0)
        return [build(node["items"], root, mode) for _ in range(n)]
    if k == "object":
        out = {}
        required = node.get("required", [])
        for name, prop in node.get("properties", {}).items():
            if mode == "min" and name not in required:
                continue
            out[name] = build(prop, root, mode)
        if mode != "min" and node.get("additionalProperties", True):
            out["x-vendorExtension"] = {"nested": [1, "two", None], "flag": False}
        return out
    raise AssertionError(k)


def locations(instance, node: dict, root: dict, path=()):
    """Every (path, schema node) in an instance, descending only into array item 0
    (the other items are copies of it)."""
    node = deref(node, root)
    yield path, node
    k = kind(node)
    if k == "object" and isinstance(instance, dict):
        for name, prop in node.get("properties", {}).items():
            if name in instance:
                yield from locations(instance[name], prop, root, path + (name,))
    elif k == "array" and isinstance(instance, list) and instance:
        yield from locations(instance[0], node["items"], root, path + (0,))


def get(instance, path):
    for p in path:
        instance = instance[p]
    return instance


def replaced(instance, path, value):
    if not path:
        return copy.deepcopy(value)
    out = copy.deepcopy(instance)
    get(out, path[:-1])[path[-1]] = value
    return out


def pointer(path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def mutations(maximal, root: dict):
    """(case, payload, expected_valid) for single faults of a valid instance."""
    seen_enums: set[str] = set()
    first_datetime = True
    for path, node in locations(maximal, root, root):
        here = pointer(path) or "/"
        value = get(maximal, path)
        k = kind(node)
        if path:
            yield f"null {here}", replaced(maximal, path, None), k == "any"
        if k == "object":
            for name in node.get("required", []):
                obj = copy.deepcopy(value)
                del obj[name]
                yield f"drop required {pointer(path + (name,))}", replaced(maximal, path, obj), False
            obj = dict(value, unknownProperty=1)
            open_object = node.get("additionalProperties", True)
            yield f"unknown property {here}", replaced(maximal, path, obj), open_object
            if path:
                yield f"wrong type {here}", replaced(maximal, path, "not an object"), False
                yield f"array for object {here}", replaced(maximal, path, [value]), False
        elif k == "array":
            yield f"wrong type {here}", replaced(maximal, path, {"0": value[0] if value else 1}), False
            item = build(node["items"], root, "min")
            if node.get("minItems", 0) > 0:
                yield f"below minItems {here}", replaced(maximal, path, []), False
            if "maxItems" in node:
                n = node["maxItems"]
                yield f"at maxItems {here}", replaced(maximal, path, [item] * n), True
                yield f"above maxItems {here}", replaced(maximal, path, [item] * (n + 1)), False
        elif k == "string":
            yield f"wrong type {here}", replaced(maximal, path, 12345), False
            if "maxLength" in node:
                n = node["maxLength"]
                yield f"maxLength+1 {here}", replaced(maximal, path, text_of(n + 1)), False
                yield f"ascii at maxLength {here}", replaced(maximal, path, "z" * n), True
                yield f"ascii maxLength+1 {here}", replaced(maximal, path, "z" * (n + 1)), False
            yield f"empty string {here}", replaced(maximal, path, ""), True
        elif k == "datetime":
            yield f"wrong type {here}", replaced(maximal, path, 20240101), False
            yield f"bad date-time {here}", replaced(maximal, path, "2024-02-30T00:00:00Z"), False
            if first_datetime:
                first_datetime = False
                for i, bad in enumerate(DT_INVALID):
                    yield f"bad date-time #{i} {here}", replaced(maximal, path, bad), False
                for i, good in enumerate(DT_VALID_EDGE):
                    yield f"edge date-time #{i} {here}", replaced(maximal, path, good), True
        elif k == "enum":
            yield f"wrong type {here}", replaced(maximal, path, 7), False
            yield f"not in enum {here}", replaced(maximal, path, "NotAValue"), False
            lowered = node["enum"][0].lower()
            if lowered not in node["enum"]:
                yield f"enum case {here}", replaced(maximal, path, lowered), False
            key = json.dumps(node["enum"])
            if key not in seen_enums:
                seen_enums.add(key)
                for v in node["enum"]:
                    yield f"enum value {v!r} {here}", replaced(maximal, path, v), True
        elif k == "integer":
            yield f"wrong type {here}", replaced(maximal, path, "12"), False
            yield f"boolean for integer {here}", replaced(maximal, path, True), False
            yield f"integer 1.5 {here}", replaced(maximal, path, 1.5), False
            yield f"integer as float {here}", replaced(maximal, path, float(value)), True
            yield f"negative integer {here}", replaced(maximal, path, -3), node.get("minimum") is None
            if "minimum" in node:
                yield f"below minimum {here}", replaced(maximal, path, int(node["minimum"]) - 1), False
            if "maximum" in node:
                yield f"above maximum {here}", replaced(maximal, path, int(node["maximum"]) + 1), False
        elif k == "number":
            yield f"wrong type {here}", replaced(maximal, path, "1.5"), False
            yield f"boolean for number {here}", replaced(maximal, path, False), False
            yield f"integer for number {here}", replaced(maximal, path, 7), True
            yield f"negative number {here}", replaced(maximal, path, -0.25), node.get("minimum") is None
            if "minimum" in node:
                yield f"below minimum {here}", replaced(maximal, path, node["minimum"] - 0.5), False
            if "maximum" in node:
                yield f"above maximum {here}", replaced(maximal, path, node["maximum"] + 0.5), False
        elif k == "boolean":
            yield f"wrong type {here}", replaced(maximal, path, "true"), False
            yield f"integer for boolean {here}", replaced(maximal, path, 1), False
        elif k == "any":
            yield f"scalar for any {here}", replaced(maximal, path, 42), True


def cases(root: dict):
    minimal = build(root, root, "min")
    maximal = build(root, root, "max")
    # Mutations start from the maximal instance with arrays at minItems (one
    # item: every array in these schemas has minItems 1), which keeps the
    # corpus small; arrays at maxItems get their own cases.
    compact = build(root, root, "max_arrays_min")
    yield "minimal", minimal, True
    yield "maximal", maximal, True
    yield "maximal, arrays at minItems", compact, True
    yield "empty object", {}, not root.get("required")
    yield "payload is an array", [], False
    yield "payload is a string", "x", False
    yield "payload is null", None, False
    yield from mutations(compact, root)


def main() -> int:
    files = sorted(SCHEMA_DIR.glob("*.json"))
    if len(files) != 128:
        print(f"expected 128 OCPP 2.0.1 schemas in {SCHEMA_DIR}, found {len(files)}", file=sys.stderr)
        return 1
    out = sys.stdout
    out.write(json.dumps({"schemas": [f.stem for f in files]}) + "\n")
    disagreements = 0
    for f in files:
        root = json.loads(f.read_text(encoding="utf-8"))
        validator = Draft6Validator(root, format_checker=FormatChecker())
        name = f.stem
        direction = "Request" if name.endswith("Request") else "Response"
        action = name[: -len(direction)]
        for case, payload, expected in cases(root):
            error = best_match(validator.iter_errors(payload))
            valid = error is None
            if valid != expected:
                disagreements += 1
                print(f"{name}: case {case!r} built to be valid={expected}, jsonschema says "
                      f"{valid} ({error.message if error else ''})", file=sys.stderr)
            out.write(json.dumps({
                "action": action,
                "direction": direction,
                "case": case,
                "payload": payload,
                "valid": valid,
                "keyword": None if valid else error.validator,
                "path": None if valid else pointer(error.absolute_path),
            }, ensure_ascii=False) + "\n")
    if disagreements:
        print(f"{disagreements} corpus cases did not get the verdict they were built for", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
