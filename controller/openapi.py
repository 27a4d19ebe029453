"""The OpenAPI 3.1 document, generated from the route table and the pydantic
models (controller.api.ROUTES, controller.models): what is served is what is
documented."""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from controller import __version__
from controller.models import ErrorOut

REF = "#/components/schemas/{model}"
_ERRORS = {400: "invalid input (the field is named)", 401: "no or bad token", 403: "the role may not do this",
           404: "not found", 413: "body too large"}


def _models(routes) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ErrorOut": ErrorOut}
    for r in routes:
        for mdl in (r.body, r.response[1] if isinstance(r.response, tuple) else r.response):
            if isinstance(mdl, type) and issubclass(mdl, BaseModel):
                seen[mdl.__name__] = mdl
    return list(seen.values())


def document(routes) -> dict[str, Any]:
    models = _models(routes)
    keys = [(mdl, "validation") for mdl in models] + [(mdl, "serialization") for mdl in models]
    refs, defs = models_json_schema(keys, ref_template=REF)
    schemas = defs.get("$defs", {})

    def ref(mdl, mode="serialization"):
        return refs[(mdl, mode)]

    paths: dict[str, dict] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__, "responses": {}}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"{(\w+)}", r.path)]
        params += [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                    **({"description": q.description} if q.description else {})} for q in r.query]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(r.body, "validation")}}}
        if isinstance(r.response, tuple):
            schema = {"type": "object", "properties": {"items": {"type": "array", "items": ref(r.response[1])}},
                      "required": ["items"]}
        elif r.response is not None:
            schema = ref(r.response)
        else:
            schema = None
        if r.status == 204:
            op["responses"]["204"] = {"description": "done"}
        elif schema is not None:
            op["responses"][str(r.status)] = {"description": "ok", "content": {r.content_type: {"schema": schema}}}
        else:
            content = {"text/csv": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}} \
                if "exports" in r.path else {r.content_type: {"schema": {"type": "object" if r.content_type ==
                                                                          "application/json" else "string"}}}
            op["responses"][str(r.status)] = {"description": "ok", "content": content}
        errs = dict(_ERRORS) if r.permission else {}
        if r.body is None:
            errs.pop(413, None)
        if "{" not in r.path:
            errs.pop(404, None)
        errs.update(r.extra_responses)
        for code, text in sorted(errs.items()):
            op["responses"][str(code)] = {"description": text,
                                          "content": {"application/json": {"schema": ref(ErrorOut)}}}
        if r.permission:
            op["security"] = [{"bearer": []}]
            op["x-permission"] = r.permission
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "vks-controller", "version": __version__,
                 "description": "Registry, hearings and the clock of the VKS rules (issue 4)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
