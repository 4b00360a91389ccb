"""The OpenAPI document is the API's validator: one source of truth.

``openapi.yaml`` describes every operation; this module loads it, completes
the responses every operation can give (``complete``: 400 where there is
input, 401/403 behind a token, 404 on path parameters, 413 with a body, 503
everywhere the database is needed), and ``schema_middleware`` checks each
request against the operation its route matched, before the handler runs:

- path parameters: a value outside the schema names nothing that could
  exist, so 404 (an id of ``0``, ``-1`` or 20 digits); 400 on a PUT, whose
  path names what it creates;
- query and header parameters: converted from text by the schema's type
  (integers in ASCII digits only, ``true``/``false``), then validated: 400
  naming the parameter;
- the JSON body: read through ``hub.inputs.load_json`` (depth, NaN, Unicode,
  64-bit integers), validated with ``jsonschema`` against the operation's
  schema: 400 naming the field (``too_large`` for ``maxLength``). Handlers
  get the parsed body from ``json_body`` and read the converted parameters
  through ``int_param``.

Messages name the field and the rule, never the value (it may be personal).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.typedefs import Handler
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from hub.api.base import BODY, PARAMS, read_json_object
from hub.errors import InvalidInput, NotFound, TooLarge
from hub.inputs import FIELD_LIMITS, ascii_int, clean_text

OPENAPI = Path(__file__).with_name("openapi.yaml")
# The NonBlank schema's pattern (openapi.yaml): one character that is not a space by ECMA-262 or Python.
NON_BLANK = r"[^\s\x1c-\x1f\x85]"
METHODS = ("get", "put", "post", "patch", "delete")
DOCUMENT_URI = "urn:servicehub:openapi"

# Responses ``complete`` adds, by status: the name under components/responses.
STANDARD_RESPONSES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "409": "Conflict",
    "413": "TooLarge",
    "429": "RateLimited",
    "503": "Unavailable",
}


@cache
def openapi_document() -> dict[str, Any]:
    """The document as served: ``openapi.yaml`` completed (``complete``)."""
    return complete(yaml.safe_load(OPENAPI.read_text()))


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the responses its operations can give added where
    the YAML does not list them, each pointing to a named Error response:

    - 400 where an operation takes parameters or a body (validation);
    - 401 and 403 where it needs a token (no or a bad token; the role);
    - 404 where its path has parameters (an id of nothing);
    - 413 where it takes a body (``HUB_MAX_BODY_BYTES``);
    - 503 on every ``/api/v1`` operation but the document itself: the
      database (or the knowledge base, the ticket service) may be down.

    409 (conflicts) and 429 (rate limits) are written in the YAML, where they happen.
    """
    document = copy.deepcopy(document)
    default_security = document.get("security", [])
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            parameters = [
                _resolve(document, p) for p in (*item.get("parameters", []), *operation.get("parameters", []))
            ]
            has_body = "requestBody" in operation
            wanted = []
            if parameters or has_body:
                wanted.append("400")
            if operation.get("security", default_security):
                wanted += ["401", "403"]
            if any(p["in"] == "path" for p in parameters):
                wanted.append("404")
            if has_body:
                wanted.append("413")
            if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
                wanted.append("503")
            for status in wanted:
                responses.setdefault(status, {"$ref": f"#/components/responses/{STANDARD_RESPONSES[status]}"})
            if has_body:
                _limit_strings(_resolve(document, operation["requestBody"]))
    return document


def _limit_strings(request_body: dict[str, Any]) -> None:
    """Give a body's top-level string fields named in ``FIELD_LIMITS`` (the
    stored columns' lengths) their ``maxLength``, unless the YAML sets one."""
    for media in request_body.get("content", {}).values():
        for name, schema in media.get("schema", {}).get("properties", {}).items():
            if name in FIELD_LIMITS and "string" in _types(schema) and "maxLength" not in schema:
                schema["maxLength"] = FIELD_LIMITS[name]


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its local ``$ref`` points to."""
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        target: Any = document
        for part in pointer:
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


# --- operations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    location: str  # path, query, header
    required: bool
    schema: dict[str, Any]
    validator: Draft202012Validator


@dataclass(frozen=True, slots=True)
class Operation:
    parameters: tuple[Parameter, ...]
    body: Draft202012Validator | None
    body_required: bool


@cache
def operations() -> dict[tuple[str, str], Operation]:
    """Every operation of the document by (METHOD, path template), with its
    validators compiled once; ``$ref`` resolves inside the document."""
    document = openapi_document()
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))

    def validator(pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry)

    found = {}
    for path, item in document["paths"].items():
        escaped = path.replace("~", "~0").replace("/", "~1")
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            parameters = []
            for where, listed in (("", item.get("parameters", [])), (f"/{method}", operation.get("parameters", []))):
                for index, node in enumerate(listed):
                    pointer = f"/paths/{escaped}{where}/parameters/{index}"
                    if "$ref" in node:
                        pointer = node["$ref"].removeprefix("#")
                    resolved = _resolve(document, node)
                    parameters.append(
                        Parameter(
                            name=resolved["name"],
                            location=resolved["in"],
                            required=bool(resolved.get("required")),
                            schema=_resolve(document, resolved.get("schema", {})),
                            validator=validator(f"{pointer}/schema"),
                        )
                    )
            body = None
            request_body = _resolve(document, operation.get("requestBody", {}))
            if "application/json" in request_body.get("content", {}):
                body = validator(f"/paths/{escaped}/{method}/requestBody/content/application~1json/schema")
            found[(method.upper(), path)] = Operation(tuple(parameters), body, bool(request_body.get("required")))
    return found


# --- the middleware ----------------------------------------------------------------------


@web.middleware
async def schema_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the request against its operation in the document (after
    authentication: a caller without a token learns nothing of the schema)."""
    resource = request.match_info.route.resource
    operation = operations().get((request.method, resource.canonical)) if resource is not None else None
    if operation is not None:
        request = await check_request(request, operation)
    return await handler(request)


async def check_request(request: web.Request, operation: Operation) -> web.Request:
    """``request`` checked; a clone whose query holds the cleaned text when
    cleaning changed a value (NUL, NFC), so handlers read what was checked."""
    converted: dict[str, Any] = {}
    cleaned_query: dict[str, str] = {}
    for parameter in operation.parameters:
        if parameter.location == "path":
            raw = request.match_info.get(parameter.name)
        elif parameter.location == "query":
            raw = request.query.get(parameter.name)
        elif parameter.location == "header":
            raw = request.headers.get(parameter.name)
        else:
            continue
        label = f"{parameter.location} parameter '{parameter.name}'"
        if raw is None:
            if parameter.required:
                raise InvalidInput(f"{label} is required", details={"field": parameter.name, "in": parameter.location})
            continue
        text = clean_text(raw, parameter.name)
        if text != raw and parameter.location == "query":
            cleaned_query[parameter.name] = text
        value = _convert(text, parameter.schema)
        errors = list(parameter.validator.iter_errors(value)) if value is not _INVALID else []
        if value is _INVALID or errors:
            error = best_match(errors) if errors else None
            problem = _describe(error, label) if error else f"{label} must be {_expected(parameter.schema)}"
            if parameter.location == "path" and request.method != "PUT":
                # Names nothing that could exist; a PUT would create it, so there it is a 400.
                raise NotFound(f"no such {parameter.name}: {problem}", details={"field": parameter.name, "in": "path"})
            raise _error(problem, error, parameter.name, parameter.location)
        converted[parameter.name] = value
    if cleaned_query:
        request = request.clone(rel_url=request.rel_url.update_query(cleaned_query))
    request[PARAMS] = converted
    if operation.body is None:
        return request
    raw_body = await request.read()
    if not raw_body:
        if operation.body_required:
            raise InvalidInput("request body is empty; expected a JSON object", details={"in": "body"})
        return request
    body = whole_numbers(read_json_object(raw_body))
    errors = list(operation.body.iter_errors(body))
    if errors:
        error = best_match(errors)
        where = _field(error)
        message = _describe(error, f"'{where}'" if where else "request body")
        raise _error(message, error, blamed_field(error) or None, "body")
    request[BODY] = body
    return request


_INVALID: Any = object()


def whole_numbers(value: Any) -> Any:
    """``value`` with whole floats (``81.0``) as ints: JSON has one number
    type, and JSON Schema's ``integer`` takes ``81.0``, so handlers that
    check ``isinstance(..., int)`` see what the document accepted."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    return value


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if isinstance(kind, str):
        return [kind]
    found: list[str] = []
    for branch in (*schema.get("anyOf", []), *schema.get("oneOf", [])):
        found += _types(branch)
    return found or ["string"]


def _convert(raw: str, schema: dict[str, Any]) -> Any:
    """A parameter's text as the schema's type: integers in ASCII digits
    (with a minus sign), finite numbers, ``true``/``false``; else ``_INVALID``."""
    types = _types(schema)
    if "integer" in types:
        digits = raw.removeprefix("-")
        number = ascii_int(digits)
        if number is not None:
            return -number if raw.startswith("-") else number
    if "number" in types and re.fullmatch(r"-?[0-9]{1,15}(\.[0-9]{1,15})?", raw):
        value = float(raw)
        if math.isfinite(value):
            return value
    if "boolean" in types and raw in ("true", "false"):
        return raw == "true"
    if "string" in types:
        return raw
    return _INVALID


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _expected(schema: dict[str, Any]) -> str:
    return " or ".join(_TYPE_NAMES.get(kind, kind) for kind in _types(schema))


def _field(error: ValidationError) -> str:
    """``attributes.n``, ``tags[2]``: where in the body the error is."""
    where = ""
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where


def _describe(error: ValidationError, label: str) -> str:
    """What is wrong, naming ``label``, never echoing the value."""
    keyword, expected = error.validator, error.validator_value
    if keyword == "type":
        return f"{label} must be {_expected({'type': expected})}"
    if keyword == "required":
        instance = error.instance if isinstance(error.instance, dict) else {}
        missing = next((name for name in expected if name not in instance), "?")
        prefix = label.removesuffix("'") + "." if label.startswith("'") else "'"
        return f"{prefix}{missing}' is required"
    if keyword == "enum":
        return f"{label} must be one of {', '.join(str(v) for v in expected)}"
    if keyword == "const":
        return f"{label} must be {expected}"
    if keyword == "maxLength":
        return f"{label} is {len(error.instance)} characters; at most {expected} are allowed"
    if keyword == "minLength":
        return f"{label} must not be empty" if expected == 1 else f"{label} needs at least {expected} characters"
    if keyword == "pattern":
        if expected == NON_BLANK:
            return f"{label} is empty (blank text is not allowed)"
        return f"{label} must match {expected}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bounds = error.schema if isinstance(error.schema, dict) else {}
        low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
        high = bounds.get("maximum", bounds.get("exclusiveMaximum"))
        if low is not None and high is not None:
            return f"{label} must be between {low} and {high}"
        return f"{label} must be {'at least' if high is None else 'at most'} {low if high is None else high}"
    if keyword == "additionalProperties":
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(str(k) for k in error.instance if k not in known) if isinstance(error.instance, dict) else []
        names = ", ".join(f"'{name[:64]}'" for name in extra[:3])
        return f"{label} has unknown fields ({names}); allowed: {', '.join(known) or 'none'}"
    if keyword == "minProperties":
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return f"nothing to change: give {', '.join(known) or 'a field'}"
    if keyword in ("minItems", "maxItems"):
        return f"{label} must have {'at least' if keyword == 'minItems' else 'at most'} {expected} items"
    if keyword == "uniqueItems":
        return f"{label} must not repeat items"
    if keyword == "not":
        return f"{label} is reserved"
    if keyword in ("anyOf", "oneOf"):
        return _describe_forms(error, label)
    return f"{label} is not allowed here ({keyword})"


def _chosen_form(error: ValidationError) -> ValidationError | None:
    """Of an ``anyOf``/``oneOf`` error, the best error of the one form whose
    ``const`` (a ``kind``) matched; None when no single form was chosen."""
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    chosen = [errors for errors in branches.values() if not any(e.validator == "const" for e in errors)]
    return best_match(chosen[0]) if len(chosen) == 1 else None


def blamed_field(error: ValidationError) -> str:
    """The field to name in ``details.field``: where the error is, or the
    missing property of a ``required`` error, or the chosen form's field."""
    if error.validator in ("anyOf", "oneOf"):
        chosen = _chosen_form(error)
        if chosen is not None:
            return blamed_field(chosen)
    where = _field(error)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = next((name for name in error.validator_value if name not in error.instance), None)
        if missing is not None:
            return f"{where}.{missing}" if where else str(missing)
    return where


def _describe_forms(error: ValidationError, label: str) -> str:
    """For ``anyOf``/``oneOf``: the one form a ``const`` (``kind``) chose,
    described; else the types the forms allow."""
    chosen = _chosen_form(error)
    if chosen is not None:
        where = _field(chosen)
        return _describe(chosen, f"'{where}'" if where else label)
    kinds: list[str] = []
    for sub in error.context or []:
        if sub.validator == "type":
            for kind in sub.validator_value if isinstance(sub.validator_value, list) else [sub.validator_value]:
                if kind not in kinds:
                    kinds.append(kind)
    if kinds:
        return f"{label} must be {_expected({'type': kinds})}"
    return f"{label} is not any of the allowed forms"


def _error(message: str, error: ValidationError | None, field: str | None, location: str) -> InvalidInput:
    details = {"in": location, **({"field": field} if field else {})}
    if error is not None and error.validator == "maxLength":
        return TooLarge(message, details=details)
    return InvalidInput(message, details=details)
