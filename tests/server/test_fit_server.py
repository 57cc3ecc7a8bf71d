"""The server estimates at submission: ``POST /api/v1/estimate`` and 422 for a job that cannot
fit the ``--max-memory`` budget (refused before any worker or load is involved)."""

from __future__ import annotations

from tests.server.conftest import MakeClient

JOB = {"prompt": "a fox", "model": "alpha", "width": 512, "height": 512, "steps": 1}


def test_estimate_and_refusal(make_client: MakeClient) -> None:
    roomy = make_client()
    r = roomy.post("/api/v1/estimate", json=JOB)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["fits"] is True and data["changed"] == []
    est = data["estimate"]
    assert est["peak_ram_bytes"] > est["weights"]["diffusion_model"] > 0
    assert est["peak_phase"] == "decode"
    tight = make_client(data="tight", max_memory_gb=est["weights"]["diffusion_model"] / 1e9)
    r = tight.post("/api/v1/estimate", json=JOB)
    assert r.status_code == 200 and r.json()["fits"] is False
    assert r.json()["needed_bytes"] > r.json()["budget_bytes"]
    r = tight.post("/api/v1/jobs", json=JOB)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "does_not_fit"
    assert "of RAM" in error["message"] and "the budget is" in error["message"]
    assert "sdcpp serve --max-memory" in error["message"]
    assert tight.get("/api/v1/jobs").json()["jobs"] == []
    a1111 = tight.post("/sdapi/v1/txt2img", json={"prompt": "a fox", "width": 512, "height": 512,
                       "override_settings": {"sd_model_checkpoint": "alpha"}})  # fmt: skip
    assert a1111.status_code == 422


def test_switches_turned_on_to_fit(make_client: MakeClient) -> None:
    est = make_client().post("/api/v1/estimate", json=JOB).json()["estimate"]
    decode = sum(est["phases"]["decode"]["ram"].values())
    sampling = sum(est["phases"]["sampling"]["ram"].values())
    budget = max(sampling, decode - est["phases"]["decode"]["ram"]["vae"] // 2)
    client = make_client(data="fit", max_memory_gb=budget * 1.02 / 1e9)
    data = client.post("/api/v1/estimate", json=JOB).json()
    assert data["fits"] is True and "vae_tiling" in data["changed"], data
    r = client.post("/api/v1/jobs", json=JOB)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["vae_tiling"] is True
