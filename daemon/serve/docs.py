"""``/docs``: the API's reference as one self-contained HTML page, made from its OpenAPI spec.

FastAPI's Swagger UI loads its script and styles from a CDN, which a microscope PC without the
internet cannot reach (the page stays blank); it is still served at ``/docs/swagger`` for
those who can. This page needs nothing from outside: no script, no fetched style or font.
Each operation lists its method and path, what it does (its docstring), its parameters (where,
type, required, default, what they mean), its request body and its answers.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["reference_page"]

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222;
       padding: 0 1rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
.op { margin: 1rem 0 1.5rem; }
.method { display: inline-block; min-width: 3.5rem; font-weight: bold; color: #fff;
          padding: 0.1rem 0.4rem; border-radius: 3px; text-align: center; }
.get { background: #2b7bb9; } .post { background: #3a9a4c; } .put { background: #c77c12; }
.patch { background: #8a5cb8; } .delete { background: #b83232; }
code.path { font-size: 1.05rem; margin-left: 0.5rem; }
table { border-collapse: collapse; margin: 0.4rem 0; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left;
         vertical-align: top; }
p.doc { white-space: pre-wrap; margin: 0.4rem 0; }
"""


def _type(schema: dict[str, Any]) -> str:
    """A short type name of a JSON schema (``integer``, ``string | null``, ``Labels``)."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    kind = str(schema.get("type", "any"))
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type(schema['items'])}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return kind


def _parameters(operation: dict[str, Any]) -> str:
    rows = []
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        default = schema.get("default")
        bounds = [
            f"{word} {schema[key]}"
            for key, word in (
                ("minimum", ">="),
                ("maximum", "<="),
                ("exclusiveMinimum", ">"),
                ("exclusiveMaximum", "<"),
                ("maxLength", "length <="),
            )
            if key in schema
        ]
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(str(parameter.get('name', '')))}</code></td>"
            f"<td>{html.escape(str(parameter.get('in', '')))}</td>"
            f"<td>{html.escape(_type(schema))}</td>"
            f"<td>{'yes' if parameter.get('required') else 'no'}</td>"
            f"<td>{'' if default is None else html.escape(repr(default))}</td>"
            f"<td>{html.escape('; '.join(bounds))}</td>"
            f"<td>{html.escape(str(parameter.get('description', '')))}</td>"
            "</tr>"
        )
    if not rows:
        return ""
    head = (
        "<tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>default</th>"
        "<th>bounds</th><th>meaning</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _body(operation: dict[str, Any]) -> str:
    content = operation.get("requestBody", {}).get("content", {})
    parts = [
        f"<p>Body ({html.escape(kind)}): <code>{html.escape(_type(c.get('schema', {})))}</code></p>"
        for kind, c in content.items()
    ]
    return "".join(parts)


def _answers(operation: dict[str, Any]) -> str:
    codes = [
        f"{html.escape(code)} {html.escape(str(answer.get('description', '')))}"
        for code, answer in sorted(operation.get("responses", {}).items())
    ]
    return f"<p>Answers: {'; '.join(codes)}</p>" if codes else ""


def _schemas(spec: dict[str, Any]) -> str:
    parts = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        fields = "".join(
            f"<tr><td><code>{html.escape(field)}</code></td>"
            f"<td>{html.escape(_type(sub))}</td>"
            f"<td>{'yes' if field in schema.get('required', []) else 'no'}</td></tr>"
            for field, sub in schema.get("properties", {}).items()
        )
        table = (
            f"<table><tr><th>field</th><th>type</th><th>required</th></tr>{fields}</table>"
            if fields
            else ""
        )
        parts.append(f'<h3 id="{html.escape(name)}">{html.escape(name)}</h3>{table}')
    return "<h2>Schemas</h2>" + "".join(parts) if parts else ""


def reference_page(spec: dict[str, Any], *, swagger_url: str = "/docs/swagger") -> str:
    """The reference of the API described by the OpenAPI ``spec``, as one HTML page."""
    info = spec.get("info", {})
    title = html.escape(str(info.get("title", "API")))
    summary = html.escape(str(info.get("summary", info.get("description", ""))))
    sections: dict[str, list[str]] = {}
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            doc = html.escape(str(operation.get("description") or operation.get("summary", "")))
            sections.setdefault(tag, []).append(
                '<div class="op">'
                f'<span class="method {method}">{method.upper()}</span>'
                f'<code class="path">{html.escape(path)}</code>'
                f'<p class="doc">{doc}</p>'
                f"{_parameters(operation)}{_body(operation)}{_answers(operation)}"
                "</div>"
            )
    body = "".join(
        f"<h2>{html.escape(tag)}</h2>{''.join(ops)}" for tag, ops in sorted(sections.items())
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'  # no favicon to fetch
        f"<title>{title}: API reference</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title} API, version {html.escape(str(info.get('version', '')))}</h1>"
        f"<p>{summary}</p>"
        '<p>The machine-readable spec: <a href="/openapi.json">/openapi.json</a>. '
        f"An interactive page (Swagger UI, which loads its script from the internet): "
        f'<a href="{html.escape(swagger_url)}">{html.escape(swagger_url)}</a>.</p>'
        f"{body}{_schemas(spec)}</body></html>"
    )
