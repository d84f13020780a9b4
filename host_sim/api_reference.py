"""docs/api-reference.md, written from the host's OpenAPI document so the two cannot drift.

`fuelsim host openapi --markdown > docs/api-reference.md` regenerates it; a test compares the
committed file with `markdown(reference_document())`. The document is built from an app over a
temporary database with a fixed clock, so its text depends only on the code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cardcore.ports import Hsm

HEADER = """\
# Host API reference

Generated from the host's OpenAPI document by `fuelsim host openapi --markdown >
docs/api-reference.md`; do not edit by hand (a test checks the two match). How to sign a
request, the error envelope and the design are in [host-api.md](host-api.md).
"""

_METHODS = ("get", "put", "post", "patch", "delete")


def reference_document(hsm: Hsm) -> dict[str, Any]:
    """The OpenAPI document of a plain host (no test knobs), as `GET /openapi.json` serves it."""
    from host_sim.app import create_app  # the app module is only needed here
    from host_sim.db import MEMORY

    app = create_app(MEMORY, hsm, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    try:
        return app.openapi()
    finally:
        app.state.host.db.close()


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _type(schema: dict[str, Any]) -> str:
    """A short type for a table cell: `int`, `str | null`, `list[BillResult]`, …"""
    name = _ref_name(schema)
    if name:
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type(schema.get('items', {}))}]"
    return {"integer": "int", "string": "str", "boolean": "bool", "number": "float"}.get(
        str(kind), str(kind)
    )


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("maxLength", "max length"),
        ("pattern", "pattern"),
        ("default", "default"),
    ):
        if key in schema:
            value = schema[key]
            shown = f"`{value}`" if key == "pattern" else json.dumps(value, ensure_ascii=False)
            parts.append(f"{label} {shown}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    summary = op.get("summary", "")
    scope = op.get("x-fuel-scope")
    signed = f"signed, scope `{scope}`" if scope else "open (no signature)"
    lines += [f"{summary} — {signed}.", ""]
    if op.get("description"):
        lines += [" ".join(str(op["description"]).split()), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | notes |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            notes = _cell(" ".join(filter(None, [p.get("description", ""), _limits(schema)])))
            required = "yes" if p.get("required") else "no"
            lines.append(f"| `{p['name']}` | {p['in']} | {_type(schema)} | {required} | {notes} |")
        lines.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if body:
        required = " (required)" if op["requestBody"].get("required") else ""
        lines += [f"Body{required}: {_type(body.get('schema', {}))}", ""]
    lines += ["| status | body | meaning |", "|---|---|---|"]
    for status, answer in sorted(op.get("responses", {}).items()):
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        shown = _type(schema) if schema else ""
        lines.append(f"| {status} | {shown} | {_cell(answer.get('description', ''))} |")
    return [*lines, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [" ".join(str(schema["description"]).split()), ""]
    props = schema.get("properties", {})
    if not props:
        return [*lines, f"Type: {_type(schema)}", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | notes |", "|---|---|---|---|"]
    for field, prop in props.items():
        notes = _cell(" ".join(filter(None, [prop.get("description", ""), _limits(prop)])))
        flag = "yes" if field in required else "no"
        lines.append(f"| `{field}` | {_type(prop)} | {flag} | {notes} |")
    if schema.get("additionalProperties") is True:
        lines.append("| … | any | no | further fields carry the figures |")
    return [*lines, ""]


def markdown(document: dict[str, Any]) -> str:
    """The reference as Markdown: operations grouped by tag, then every schema."""
    info = document.get("info", {})
    lines = [
        HEADER,
        f"OpenAPI {document.get('openapi', '')}, {info.get('title', '')} "
        f"{info.get('version', '')}.",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in document.get("paths", {}).items():
        for method in _METHODS:
            if method in operations:
                op = operations[method]
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    for tag in sorted(by_tag):
        lines += [f"## {tag}", ""]
        for path, method, op in sorted(by_tag[tag], key=lambda item: (item[0], item[1])):
            lines += _operation(path, method, op)
    lines += ["## Schemas", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        lines += _schema(name, schema)
    return "\n".join(lines).rstrip("\n") + "\n"
