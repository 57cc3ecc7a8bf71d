"""Schemathesis against the live app (fake engine, header-only model files): every operation of
/openapi.json — native, A1111 and OpenAI alike — fuzzed from its own schema with bounded examples
and every schemathesis check but one; any 5xx, undocumented status, accepted invalid data, wrong
Allow header or response that breaks the document fails. The one left out, positive data
acceptance, would demand that every schema-valid request be accepted: the model-dependent rules
(the size multiple of the model's family, width × height × batch within the server's pixel limit,
the images a kind needs, names that exist) cannot be written in JSON schema, so such requests are
rightly 422. A1111 routes for what the engine cannot do (training, interrogate) answer their
documented 501. Kept to about a minute: few examples per operation, no shrinking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from starlette.applications import Starlette
from starlette.testclient import TestClient

from sdcpp_service.config import Settings
from sdcpp_service.server.app import create_app
from sdcpp_service.server.options import ServerOptions
from tests.fakes import FakeEngine
from tests.models import layouts as L
from tests.models.corpus import write_safetensors

#: Operations that would stop the server under test (refused here anyway: --api-server-stop off).
SKIP = r"server-(stop|kill|restart)"


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    root = tmp_path_factory.mktemp("fuzz")
    models = root / "models"
    sd1 = {
        **L.prefixed("model.diffusion_model.", L.unet(768)),
        **L.prefixed("cond_stage_model.transformer.", L.clip_text(768)),
    }
    write_safetensors(models / "checkpoints" / "alpha.safetensors", sd1)
    write_safetensors(models / "loras" / "style.safetensors", L.kohya_lora(768))
    write_safetensors(models / "upscale_models" / "4x_test.safetensors", L.esrgan(up=2))
    app = create_app(
        Settings(data_dir=root / "data", model_dirs=(models,), threads=1),
        FakeEngine(step_seconds=0.0),
        ServerOptions(max_pixels=256 * 256, max_queue=1000, sync_timeout=30),
    )
    with TestClient(app):  # runs the lifespan: the service and its worker start
        yield app


@pytest.fixture(scope="module")
def api_schema(live_app: Starlette) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", live_app).exclude(path_regex=SKIP)


def test_every_operation_keeps_to_the_document(api_schema: schemathesis.BaseSchema) -> None:
    """Each operation fuzzed in turn (schemathesis' own pytest plugin does not run on pytest 9);
    every failure is collected, then all are reported at once."""
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call()
            excluded = [positive_data_acceptance]
            if response.status_code == 501:  # the declared "stable-diffusion.cpp has no …"
                excluded.append(not_a_server_error)
            case.validate_response(response, excluded_checks=excluded)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # an exception group of failures: reported below
            failures.append(f"{operation.label}: {str(exc).strip()[:1500]}")
    assert operations > 50  # native, A1111 and OpenAI routes are all in the document
    assert not failures, "\n\n".join(failures)


def test_document_lists_every_route_with_its_rules(live_app: Starlette, tmp_path: Path) -> None:
    from sdcpp_service import rules

    with TestClient(live_app) as client:
        doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    job = doc["components"]["schemas"]["Job"]["properties"]
    assert job["steps"]["maximum"] == rules.MAX_STEPS and job["frames"]["maximum"] == rules.MAX_FRAMES  # fmt: skip
    assert job["seed"]["maximum"] == rules.MAX_SEED
    assert set(paths["/api/v1/jobs"]) == {"get", "post", "delete"}
    assert {"202", "401", "413", "422", "429"} <= set(paths["/api/v1/jobs"]["post"]["responses"])
    assert "/sdapi/v1/txt2img" in paths and "/v1/images/generations" in paths
