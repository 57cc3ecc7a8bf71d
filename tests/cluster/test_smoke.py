from __future__ import annotations

from tests.cluster.conftest import Cluster


def test_one_job(cluster: Cluster) -> None:
    cluster.worker("alpha", step=0.01)
    api = cluster.node()
    cluster.wait_workers(api, 1)
    r = api.post(
        "/api/v1/jobs",
        json={"prompt": "a", "model": "alpha", "steps": 3, "width": 64, "height": 64},
    )
    assert r.status_code == 202, r.text
    view = cluster.wait_job(api, r.json()["id"], ("completed", "failed"))
    assert view["status"] == "completed", view
    out = api.get(view["outputs"][0]["url"])
    assert out.status_code == 200 and out.content[:4] == b"\x89PNG"
