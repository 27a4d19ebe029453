"""The OpenAPI 3.1 document, generated from the route table (controller.api.routing.Route) and the
pydantic models: what is served is what is documented, with each operation's permission
(`x-permission`) and the errors it can answer."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from controller import __version__
from controller.models import ErrorOut

if TYPE_CHECKING:
    from controller.api.routing import Route

REF = "#/components/schemas/{model}"
_ERRORS = {400: "invalid input (the field is named)", 401: "no or bad token", 403: "the role may not do this",
           404: "not found", 413: "body too large"}
Ref = Callable[..., dict[str, Any]]


def _models(routes: Sequence[Route]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorOut": ErrorOut}
    for r in routes:
        for mdl in (r.body, r.response[1] if isinstance(r.response, tuple) else r.response):
            if isinstance(mdl, type) and issubclass(mdl, BaseModel):
                seen[mdl.__name__] = mdl
    return list(seen.values())


def _success(r: Route, ref: Ref) -> dict[str, Any]:
    """The operation's success response(s)."""
    if r.status == 204:
        return {"204": {"description": "done"}}
    if isinstance(r.response, tuple):
        schema: dict[str, Any] | None = {
            "type": "object", "properties": {"items": {"type": "array", "items": ref(r.response[1])}},
            "required": ["items"]}
    elif r.response is not None:
        schema = ref(r.response)
    else:
        schema = None
    if schema is not None:
        return {str(r.status): {"description": "ok", "content": {r.content_type: {"schema": schema}}}}
    if "exports" in r.path:
        content = {"text/csv": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}
    else:
        kind = "object" if r.content_type == "application/json" else "string"
        content = {r.content_type: {"schema": {"type": kind}}}
    return {str(r.status): {"description": "ok", "content": content}}


# A file sent as a form: its one part, `file`.
_FILE_SCHEMAS = {"multipart/form-data": {"type": "object", "required": ["file"],
                                         "properties": {"file": {"type": "string", "format": "binary"}}}}


def _operation(r: Route, ref: Ref) -> dict[str, Any]:
    """One route as an OpenAPI operation."""
    op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__, "responses": {}}
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in re.findall(r"{(\w+)}", r.path)]
    params += [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                **({"description": q.description} if q.description else {})} for q in r.query]
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": ref(r.body, "validation")}}}
    elif r.raw_body:
        op["requestBody"] = {"required": True, "content": {ct: {"schema": _FILE_SCHEMAS.get(ct, {"type": "string"})}
                                                           for ct in r.raw_body}}
    op["responses"].update(_success(r, ref))
    errs = dict(_ERRORS) if r.permission else {}
    if r.body is None and not r.raw_body:
        errs.pop(413, None)
    if "{" not in r.path:
        errs.pop(404, None)
    errs.update(r.extra_responses)
    for code, text in sorted(errs.items()):
        op["responses"][str(code)] = {"description": text, "content": {"application/json": {"schema": ref(ErrorOut)}}}
    if r.permission:
        op["security"] = [{"bearer": []}]
        op["x-permission"] = r.permission
    return op


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`."""
    models = _models(routes)
    modes: tuple[JsonSchemaMode, ...] = ("validation", "serialization")
    refs, defs = models_json_schema([(mdl, mode) for mode in modes for mdl in models], ref_template=REF)

    def ref(mdl: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        return dict(refs[(mdl, mode)])

    paths: dict[str, dict] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": "vks-controller", "version": __version__,
                 "description": "Registry, hearings and the clock of the VKS rules (issue 4)."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
