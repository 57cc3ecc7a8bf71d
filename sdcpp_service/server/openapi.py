"""The OpenAPI document, written by hand from two tables (endpoints, request fields)."""

from __future__ import annotations

from typing import Any

from sdcpp_service._version import __version__
from sdcpp_service.engine.base import JOB_KINDS
from sdcpp_service.server.fields import GENERATION, IMAGE_FIELDS, KIND_FIELDS

#: (method, path, tag, summary)
ENDPOINTS: tuple[tuple[str, str, str, str], ...] = (
    ("get", "/health", "service", "Liveness (never needs credentials)"),
    ("get", "/version", "service", "Package, bindings and engine versions"),
    ("get", "/system", "service", "Engine build, threads, memory, loaded model"),
    ("post", "/api/v1/jobs", "jobs", "Queue a job (202 with its id and URLs; 429 when full)"),
    ("get", "/api/v1/jobs", "jobs", "List jobs (?status=&limit=&offset=)"),
    ("delete", "/api/v1/jobs", "jobs", "Cancel every queued job"),
    ("get", "/api/v1/jobs/{id}", "jobs", "A job: status, progress, outputs, error"),
    ("delete", "/api/v1/jobs/{id}", "jobs", "Remove a finished job and its output files"),
    ("post", "/api/v1/jobs/{id}/cancel", "jobs", "Cancel a queued or running job"),
    ("get", "/api/v1/jobs/{id}/events", "jobs", "Server-sent events until the job ends"),
    ("get", "/api/v1/outputs/{name}", "jobs", "An output image (?thumb=N for a thumbnail)"),
    ("get", "/api/v1/models", "models", "Model files in the model folders (?kind=)"),
    ("get", "/api/v1/models/{name}", "models", "One model file (?hash=1 computes its sha256)"),
    ("post", "/api/v1/models/load", "models", "Load a model (warm for the next jobs)"),
    ("post", "/api/v1/models/unload", "models", "Free the loaded model"),
    ("post", "/api/v1/models/refresh", "models", "Rescan the model folders"),
    ("post", "/sdapi/v1/txt2img", "a1111", "A1111 text to image (waits)"),
    ("post", "/sdapi/v1/img2img", "a1111", "A1111 image to image / inpaint (waits)"),
    ("get", "/sdapi/v1/progress", "a1111", "Progress of the running job"),
    ("post", "/sdapi/v1/interrupt", "a1111", "Stop the running job"),
    ("post", "/sdapi/v1/skip", "a1111", "Stop the running job"),
    ("get", "/sdapi/v1/options", "a1111", "Options"),
    ("post", "/sdapi/v1/options", "a1111", "Set options (sd_model_checkpoint loads a model)"),
    ("get", "/sdapi/v1/sd-models", "a1111", "Checkpoints"),
    ("get", "/sdapi/v1/sd-vae", "a1111", "VAEs"),
    ("get", "/sdapi/v1/samplers", "a1111", "Samplers"),
    ("get", "/sdapi/v1/schedulers", "a1111", "Schedulers"),
    ("get", "/sdapi/v1/upscalers", "a1111", "Upscalers"),
    ("post", "/sdapi/v1/extra-single-image", "a1111", "Upscale one image (waits)"),
    ("post", "/sdapi/v1/extra-batch-images", "a1111", "Upscale several images (waits)"),
    ("get", "/sdapi/v1/latent-upscale-modes", "a1111", "Latent upscale modes"),
    ("get", "/sdapi/v1/loras", "a1111", "LoRAs"),
    ("post", "/sdapi/v1/refresh-checkpoints", "a1111", "Rescan checkpoints"),
    ("post", "/sdapi/v1/png-info", "a1111", "Read the infotext of a PNG"),
    ("get", "/sdapi/v1/memory", "a1111", "RAM use"),
    ("post", "/v1/images/generations", "openai", "OpenAI image generation"),
    ("post", "/v1/images/edits", "openai", "OpenAI image edit (multipart)"),
    ("get", "/v1/models", "openai", "OpenAI model list"),
)

_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def job_request_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        "kind": {
            "type": "string",
            "enum": list(JOB_KINDS),
            "default": "txt2img",
        },
        "model": {"type": "string", "description": "model name (GET /api/v1/models)"},
        "loras": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
            },
        },
        "ref_images": {"type": "array", "items": {"type": "string", "format": "byte"}},
        "control_frames": {
            "type": "array",
            "items": {"type": "string", "format": "byte"},
            "description": "video: control video frames for a Wan VACE model",
        },
    }
    for name, spec in {**GENERATION, **KIND_FIELDS}.items():
        prop: dict[str, Any] = {"type": _TYPES[spec.kind]}
        if spec.lo is not None:
            prop["minimum"] = spec.lo
        if spec.hi is not None:
            prop["maximum"] = spec.hi
        if spec.nullable:
            prop["nullable"] = True
        props[name] = prop
    for name in IMAGE_FIELDS:
        props[name] = {"type": "string", "format": "byte", "description": "base64 image"}
    return {"type": "object", "properties": props, "additionalProperties": False}


def spec() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, tag, summary in ENDPOINTS:
        op: dict[str, Any] = {
            "tags": [tag],
            "summary": summary,
            "responses": {"200": {"description": "OK"}},
        }
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if (method, path) == ("post", "/api/v1/jobs"):
            op["requestBody"] = {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
            }
            op["responses"] = {"202": {"description": "queued"}, "429": {"description": "full"}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "sdcpp-service", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Job": job_request_schema()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
