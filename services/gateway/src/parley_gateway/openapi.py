"""The OpenAPI 3.1 document, generated from the operations and the msgspec types that decode them."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from parley_common.jsonlimits import INT64_MAX, INT64_MIN, JSON_VALUE_SCHEMA

from parley_gateway.http import ErrorBody
from parley_gateway.operations import Operation

REF = "#/components/schemas/{name}"


def openapi_document(operations: Sequence[Operation], *, title: str, version: str) -> dict[str, Any]:
    # Bodies, responses and parameters alike are described by the very msgspec types the gateway decodes
    # them with, so every constraint it enforces (lengths, patterns, enums, ranges) is in the document.
    types: list[Any] = [ErrorBody]
    for op in operations:
        types.extend(t for t in (op.body, op.form, op.response, op.extra_response_body) if t is not None)
        types.extend(op.path_type(name) for name in op.path_params)
        types.extend(q.type for q in (*op.query, *op.headers))
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    # Free-form JSON fields refer to the one rule they all obey (parley_common.jsonlimits), and the
    # gateway holds every integer of every body to int64 whatever field it is in: the document says so.
    for schema in (*schemas, *components.values()):
        _bound_integers(schema)
        _type_string_enums(schema)
    components["JsonValue"] = JSON_VALUE_SCHEMA  # bounded already, and its `not: integer` must stay bare
    schema_of = dict(zip(map(id, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        document: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema_of[id(op.path_type(name))]}
            for name in op.path_params
        ]
        parameters += [
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "description": q.description,
                "schema": schema_of[id(q.type)],
            }
            for q in op.query
        ]
        parameters += [
            {
                "name": h.name,
                "in": "header",
                "required": h.required,
                "description": h.description,
                "schema": schema_of[id(h.type)],
            }
            for h in op.headers
        ]
        if parameters:
            document["parameters"] = parameters
        if op.body is not None:
            document["requestBody"] = {
                # read_body takes an empty body for `{}`: the body is optional when `{}` is a valid one.
                "required": not _accepts_empty_object(op.body),
                "content": {op.content_type: {"schema": schema_of[id(op.body)]}},
            }
        if op.form is not None:
            document["requestBody"] = {
                "required": True,
                "content": {
                    media: {"schema": _form_schema(schema_of[id(op.form)], media)}
                    for media in op.form_media_types
                },
            }
        if op.binary_body is not None:
            document["requestBody"] = {
                "required": True,
                "content": {
                    op.binary_body: {"schema": {"type": "string", "contentMediaType": op.binary_body}}
                },
            }
        success: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
        if op.response is not None and op.status != 204:
            success["content"] = {"application/json": {"schema": schema_of[id(op.response)]}}
        if op.binary_response is not None:
            success["content"] = {
                op.binary_response: {"schema": {"type": "string", "contentMediaType": op.binary_response}}
            }
        responses: dict[str, Any] = {str(op.status): success}
        for status, description in op.extra_responses.items():
            responses[str(status)] = {"description": description}
            if op.extra_response_body is not None:
                schema = schema_of[id(op.extra_response_body)]
                responses[str(status)]["content"] = {"application/json": {"schema": schema}}
        for status in _error_statuses(op):
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": {"$ref": REF.format(name="ErrorBody")}}},
            }
        document["responses"] = responses
        document["security"] = [] if op.public else [{"bearer": []}, {"oauth2": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = document

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "oauth2": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "/security/oauth/token",
                            "scopes": {"any": "default"},
                        }
                    },
                },
            },
        },
    }


# A multipart part's name travels in its Content-Disposition header, whose value may hold no control
# character but tab (RFC 9110; aiohttp refuses the part otherwise, 400): unknown parts are ignored, but
# their names too must be header text.
MULTIPART_PART_NAME = {"pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$"}


def _form_schema(schema: dict[str, Any], media_type: str) -> dict[str, Any]:
    if media_type != "multipart/form-data":
        return schema
    return {**schema, "propertyNames": MULTIPART_PART_NAME}


def _type_string_enums(schema: Any) -> None:
    """msgspec states a `Literal` of strings as a bare `enum`; OpenAPI readers want its `type` too."""
    if isinstance(schema, dict):
        enum = schema.get("enum")
        if "type" not in schema and isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
            schema["type"] = "string"
        for value in schema.values():
            _type_string_enums(value)
    elif isinstance(schema, list):
        for value in schema:
            _type_string_enums(value)


def _bound_integers(schema: Any) -> None:
    """Give every integer schema without its own bounds the int64 bounds every body is held to."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            schema.setdefault("minimum", INT64_MIN)
            schema.setdefault("maximum", INT64_MAX)
        for key, value in schema.items():
            if key != "not":  # bounds inside a negation would widen what it allows
                _bound_integers(value)
    elif isinstance(schema, list):
        for value in schema:
            _bound_integers(value)


def _error_statuses(op: Operation) -> list[int]:
    """What the operation declares, plus what the route wrapper itself answers for any operation:
    401 without a valid token, 400 for parameters or a body that do not match their types, 413 for a body
    read whole over the size limit."""
    statuses = set(op.errors)
    if not op.public:
        statuses.add(401)
    if (op.body is not None or op.form is not None) and not op.streams_body:
        statuses.add(413)  # a body over PARLEY_MAX_BODY_BYTES (the route wrapper's check)
    if (
        op.path_params
        or op.query
        or op.headers
        or op.body is not None
        or op.form is not None
        or op.binary_body
    ):
        statuses.add(400)
    return sorted(statuses - set(op.extra_responses))


def _accepts_empty_object(body_type: Any) -> bool:
    try:
        msgspec.convert({}, body_type)
    except msgspec.ValidationError:
        return False
    return True


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Parley API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <p style="font-family: sans-serif; margin: .5rem 1rem">The events and NATS subjects:
    <a href="/asyncapi">/asyncapi</a> (AsyncAPI 3, <a href="/asyncapi.json">/asyncapi.json</a>)</p>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def encode_document(document: dict[str, Any]) -> bytes:
    return msgspec.json.encode(document)
