"""The OpenAPI document, generated from what the server enforces: every route of the app (with
its methods), request schemas read from the request rules (:mod:`sdcpp_service.rules`) and the
dialects' field maps, and the status codes each route can answer."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Route

from sdcpp_service import rules
from sdcpp_service._version import __version__

_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}
_IMAGE = {"type": "string", "format": "byte", "description": "base64 image (a data URL is fine)"}
_IMAGES = {"type": "array", "items": _IMAGE, "maxItems": 16}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"]}},
}
_DESCRIPTIONS = {
    "200": "OK", "202": "accepted (queued or still running)", "204": "no content",
    "400": "the body cannot be read (nested too deep)", "401": "credentials needed",
    "403": "not allowed here", "404": "not found", "409": "conflicts with the job's state",
    "413": "the body is over the size limit", "422": "a field is wrong (each one named)",
    "429": "the queue is full (Retry-After)", "499": "the client went away",
    "501": "not supported by this engine", "503": "the engine is not available",
    "504": "the job is still running (follow it by id)", "507": "the data disk is full",
}  # fmt: skip


def prop(rule: rules.Rule) -> dict[str, Any]:
    """One field's JSON schema from its rule."""
    kind = _TYPES[rule.kind]
    out: dict[str, Any] = {"type": [kind, "null"] if rule.nullable else kind}
    if rule.lo is not None:
        out["minimum"] = rule.lo
    if rule.hi is not None:
        out["maximum"] = rule.hi
    if rule.choices:
        out["enum"] = list(rule.choices) + ([None] if rule.nullable else [])
    if rule.max_length is not None:
        out["maxLength"] = rule.max_length
    return out


_PROMPT = prop(rules.GENERATION["prompt"]) | {
    "description": f"at most {rules.MAX_PROMPT_CHARS} characters; {rules.MAX_CLIP_PROMPT_CHARS} "
    "for the CLIP-only SD1/SD2/SDXL families"
}
_NAME = {"type": "string", "maxLength": 1000}
_LORAS = {
    "type": "array",
    "maxItems": 32,
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _NAME, "weight": prop(rules.LORA_WEIGHT)},
    },
}


def job_request_schema() -> dict[str, Any]:
    from sdcpp_service.engine.base import IMAGE_FIELDS, IMAGE_LISTS, JOB_KINDS
    from sdcpp_service.server.options import LOAD_SLOTS

    props: dict[str, Any] = {
        "kind": {"type": "string", "enum": list(JOB_KINDS), "default": "txt2img"},
        "model": _NAME | {"description": "model name (GET /api/v1/models)"},
        "loras": _LORAS,
    }
    for name, rule in {**rules.GENERATION, **rules.KIND_FIELDS}.items():
        props[name] = prop(rule)
    props["prompt"] = _PROMPT
    for name in IMAGE_FIELDS:
        props[name] = _IMAGES if name in IMAGE_LISTS else _IMAGE
    for slot in LOAD_SLOTS:
        props[slot] = {"type": ["string", "boolean"], "maxLength": 1000}
    return {"type": "object", "properties": props, "additionalProperties": False}


def a1111_schema(img2img: bool) -> dict[str, Any]:
    from sdcpp_service.server.routes.a1111 import FIELD_MAP

    props: dict[str, Any] = {}
    for theirs, ours in FIELD_MAP.items():  # A1111 sends null for "not set"
        rule = rules.GENERATION[ours]
        props[theirs] = prop(rules.Rule(rule.kind, rule.lo, rule.hi, True, (), rule.max_length))
    props["prompt"] = _PROMPT
    props |= {
        "batch_size": {"type": "integer", "minimum": 1, "maximum": rules.MAX_BATCH},
        "n_iter": {"type": "integer", "minimum": 1, "maximum": rules.MAX_BATCH},
        "denoising_strength": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "sampler_index": {"type": "string", "maxLength": 100},
        "hr_upscaler": {"type": ["string", "null"], "maxLength": 1000},
        "styles": {"type": "array", "items": _NAME, "maxItems": 32},
        "override_settings": {"type": "object"},
        "send_images": {"type": "boolean"},
        "save_images": {"type": "boolean"},
    }
    if img2img:
        props |= {"init_images": _IMAGES, "mask": _IMAGE, "inpainting_mask_invert": {"type": "integer", "enum": [0, 1]}}  # fmt: skip
    return {"type": "object", "properties": props, "additionalProperties": True}


def openai_schema() -> dict[str, Any]:
    props = {k: prop(r) for k, r in rules.GENERATION.items() if k not in ("width", "height")}
    props |= {
        "prompt": _PROMPT | {"minLength": 1, "pattern": r"\S"},
        "model": {"type": "string", "maxLength": 1000},
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "size": {"type": "string", "pattern": r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$"},
        "response_format": {"type": "string", "enum": ["b64_json", "url"]},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "jpg", "webp"]},
        "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
    }
    return {"type": "object", "required": ["prompt"], "properties": props}


#: (method, path) → (request schema name, success status); the rest answer 200 without a body.
BODIES: dict[tuple[str, str], tuple[str, str]] = {
    ("post", "/api/v1/jobs"): ("Job", "202"),
    ("post", "/sdapi/v1/txt2img"): ("A1111Txt2Img", "200"),
    ("post", "/sdapi/v1/img2img"): ("A1111Img2Img", "200"),
    ("post", "/v1/images/generations"): ("OpenAIImageGeneration", "200"),
}
#: Query parameters a route reads, with their rules.
QUERIES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("get", "/api/v1/jobs"): {
        "status": {
            "type": "string",
            "enum": ["queued", "running", "completed", "failed", "cancelled"],
        },  # fmt: skip
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        "offset": {"type": "integer", "minimum": 0, "maximum": 10**9},
    },
    ("get", "/api/v1/outputs/{name}"): {
        "thumb": {"type": "integer", "minimum": 0, "maximum": 2048}
    },  # fmt: skip
}
#: Extra statuses of particular routes (beyond those every route of its shape can answer).
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/v1/jobs"): ("429", "507"),
    ("get", "/api/v1/jobs/{id}"): (),
    ("delete", "/api/v1/jobs/{id}"): ("409", "507"),
    ("post", "/api/v1/jobs/{id}/cancel"): ("202", "409"),
}
_SYNC = ("409", "429", "499", "504", "507")


def _statuses(method: str, path: str, ok: str, body: bool) -> list[str]:
    codes = {ok, "401"}
    if method == "post" or body:
        codes |= {"400", "413", "422"}
    if "{" in path:
        codes |= {"404", "422"}
    if (method, path) in QUERIES:
        codes.add("422")
    if path.startswith(("/sdapi/", "/v1/images/")) and method == "post":
        codes |= {"404", *_SYNC, "501", "503"}
    if path.startswith("/api/v1/models") and method == "post":
        codes |= {"404", "409", "503"}
    codes |= set(EXTRA.get((method, path), ()))
    return sorted(codes)


def _summary(route: Route) -> str:
    doc = (getattr(route.endpoint, "__doc__", None) or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else route.path


def _operation(method: str, route: Route) -> dict[str, Any]:
    path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
    tag = (
        "a1111" if path.startswith("/sdapi/") else "openai" if path.startswith("/v1/") else "native"
    )
    schema, ok = BODIES.get((method, path), ("", "200"))
    error = {"$ref": "#/components/schemas/OpenAIError" if tag == "openai" else "#/components/schemas/Error"}  # fmt: skip
    responses: dict[str, Any] = {}
    for code in _statuses(method, path, ok, bool(schema)):
        item: dict[str, Any] = {"description": _DESCRIPTIONS.get(code, "OK")}
        if code >= "400" and tag != "a1111":
            item["content"] = {"application/json": {"schema": error}}
        responses[code] = item
    op: dict[str, Any] = {"tags": [tag], "summary": _summary(route), "responses": responses}
    params = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}
        for p in re.findall(r"\{(\w+)\}", path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": sch}
        for name, sch in QUERIES.get((method, path), {}).items()
    ]
    if params:
        op["parameters"] = params
    if schema:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    return op


def spec(routes: Iterable[BaseRoute] = ()) -> dict[str, Any]:
    """The document for the app's ``routes`` (every Route and method, HEAD left implicit)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or route.path == "/openapi.json":
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                paths.setdefault(path, {})[method.lower()] = _operation(method.lower(), route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sdcpp-service", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "Job": job_request_schema(),
                "A1111Txt2Img": a1111_schema(False),
                "A1111Img2Img": a1111_schema(True),
                "OpenAIImageGeneration": openai_schema(),
                "Error": _ERROR,
                "OpenAIError": _OPENAI_ERROR,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
