"""The HTTP service (`hf_seqrec.serving`) on a tiny checkpoint: every route and status code.

A served result must equal `pipeline("next-item")`'s own output for the same input and parameters,
so each 200 case is compared with a direct pipeline call; concurrency is checked by counting forward
passes; the script is run once as a real uvicorn process to check the API key never reaches its log.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from transformers import pipeline  # noqa: E402

import hf_seqrec  # noqa: E402,F401  (registers the "next-item" task)
from hf_seqrec.serving import create_app, load_pipeline  # noqa: E402
from hf_seqrec.serving.serve_command import serve_main  # noqa: E402
from hf_seqrec.modeling.checkpoint_location import checkpoint_revision  # noqa: E402
from hf_seqrec.serving.metrics import model_revision  # noqa: E402
from testing_utils import REPO, numbered_catalog, save_tiny_lm_checkpoint, script_env  # noqa: E402

KEY = "test-key-8f3a1c"
MAX_LEN = 8
NUM_ITEMS = 30
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_torch_thread):
    """A saved tiny checkpoint with a non-trivial adapter and popularity counts; `recommend` (conftest.py)
    is its pipeline."""
    directory = tmp_path_factory.mktemp("serve-checkpoint")
    return save_tiny_lm_checkpoint(
        directory, numbered_catalog(NUM_ITEMS), max_len=MAX_LEN, popularity=[[0, 4, 4, 9], [4, 9, 9, 9]]
    )


@pytest.fixture
def client(recommend):
    with TestClient(create_app(recommend, api_key=KEY, batch_wait_ms=1)) as test_client:
        yield test_client


def direct(recommend, inputs, **params):
    """The pipeline's own answer, its warnings silenced (the service reports them in the body)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return recommend(inputs, **params)


def assert_same(got: list[dict], want: list[dict]) -> None:
    """Equal recommendations; scores to float32 precision (a padded batch may round differently)."""
    assert [{k: v for k, v in r.items() if k != "score"} for r in got] == [{k: v for k, v in r.items() if k != "score"} for r in want]
    assert [r.get("score") for r in got] == pytest.approx([r.get("score") for r in want], rel=1e-5, abs=1e-5)


def locs(response) -> list[list]:
    return [item["loc"] for item in response.json()["detail"]]


# ----------------------------------------------------------------------------- 200: same as the pipeline
@pytest.mark.parametrize(
    "history, params",
    [
        ({"history": ["1", "2", "3"]}, {}),
        ({"history": [1, 2, 3]}, {"top_k": 3}),  # integer ids, as the pipeline accepts
        ({"history": [str(i) for i in range(1, 20)]}, {"top_k": 5}),  # longer than max_len: the last 8 are read
        ({"history_text": ["Film number 4 (1974)", "film number 5"]}, {"top_k": 4}),
        ({"history": ["5", "3", "9"], "timestamps": [30, 10, "1970-01-01T00:00:20"]}, {"top_k": 3}),
        ({"history": ["1", "2"]}, {"exclude_seen": False, "return_scores": False, "top_k": 4}),
        ({"history": ["1", "2"]}, {"candidates": ["3", "4", 5, "6"], "top_k": 2}),
        ({"history": []}, {"fallback": "popular", "top_k": 3}),
    ],
)
def test_recommend_returns_the_pipelines_output(client, recommend, history, params):
    response = client.post("/recommend", json={**history, **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"recommendations": direct(recommend, history, **params), "warnings": []}


def test_batch_form_returns_one_result_per_history(client, recommend):
    inputs = [{"history": ["1", "2"]}, {"history_text": ["Film number 7 (1977)"]}, {"history": ["9"], "timestamps": [5]}]
    response = client.post("/recommend", json={"inputs": inputs, "top_k": 3}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["recommendations"] for r in body["results"]] == direct(recommend, inputs, top_k=3)
    assert body["warnings"] == [] and all(r["warnings"] == [] for r in body["results"])


def test_explanations_pass_through_like_any_pipeline_parameter(client, recommend):
    params = {"top_k": 2, "explain": True, "explain_method": "occlusion"}
    response = client.post("/recommend", json={"history": ["1", "2", "3"], **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    recommendations = response.json()["recommendations"]
    assert_same(recommendations, direct(recommend, {"history": ["1", "2", "3"]}, **params))
    assert all(len(r["explanation"]) == 3 for r in recommendations)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_applied_when_the_app_loads_the_model(checkpoint, precision):
    with TestClient(create_app(str(checkpoint), precision=precision)) as client:
        response = client.post("/recommend", json={"history": ["4", "5"], "top_k": 5})
        info = re.search(r"^seqrec_model_info\{.*\}", client.get("/metrics").text, re.MULTILINE).group(0)
    reference = pipeline("next-item", model=str(checkpoint), precision=precision)
    assert response.status_code == 200
    assert response.json()["recommendations"] == direct(reference, {"history": ["4", "5"]}, top_k=5)
    assert f'precision="{precision}"' in info


# ----------------------------------------------------------------------------- unknown items
def test_unknown_items_are_skipped_and_named_like_the_pipeline_warns(client, recommend):
    response = client.post("/recommend", json={"history": ["1", "999", "2", "abc"], "top_k": 3}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["recommendations"] == direct(recommend, {"history": ["1", "2"]}, top_k=3)
    [warning] = body["warnings"]
    assert warning["type"] == "UnknownItemWarning" and warning["field"] == "history"
    assert warning["items"] == ["999", "abc"] and "'999'" in warning["message"]


def test_unknown_candidates_are_reported_and_skipped(client, recommend):
    response = client.post("/recommend", json={"history": ["1"], "candidates": ["3", "nope"], "top_k": 5}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert [r["item_id"] for r in body["recommendations"]] == ["3"]
    assert [(w["field"], w["items"]) for w in body["warnings"]] == [("candidates", ["nope"])]


def test_a_history_with_no_known_item_is_a_422_naming_the_items(client):
    response = client.post("/recommend", json={"history": ["998", "999"]}, headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "history"] and "'998'" in error["msg"] and 'fallback="popular"' in error["msg"]
    response = client.post("/recommend", json={"inputs": [{"history": ["1"]}, {"history": ["999"]}]}, headers=AUTH)
    assert response.status_code == 422 and locs(response) == [["body", "inputs", 1, "history"]]


# ----------------------------------------------------------------------------- 422: the field is named
@pytest.mark.parametrize(
    "body, loc",
    [
        ({"history": ["1"], "top_k": 0}, ["body", "top_k"]),
        ({"history": ["1"], "top_k": NUM_ITEMS + 1}, ["body", "top_k"]),  # beyond the catalogue
        ({"history": ["1"], "top_k": "3"}, ["body", "top_k"]),
        ({"history": ["1"], "top_k": 2.5}, ["body", "top_k"]),
        ({"history": ["1"], "top_k": True}, ["body", "top_k"]),
        ({"history": "1 2 3"}, ["body", "history"]),
        ({"history": [True]}, ["body", "history", 0]),
        ({"history": [["1"]]}, ["body", "history", 0]),
        ({"history": [str(i % NUM_ITEMS + 1) for i in range(11)]}, ["body", "history"]),  # max_history=10 below
        ({"history": ["1", "2"], "timestamps": [1]}, ["body", "timestamps"]),
        ({"history": ["1", "2"], "timestamps": [1, "yesterday"]}, ["body", "timestamps"]),
        ({"history": ["1"], "exclude_seen": "no"}, ["body", "exclude_seen"]),
        ({"history": ["1"], "fallback": "random"}, ["body", "fallback"]),
        ({"history": ["1"], "candidates": []}, ["body", "candidates"]),
        ({"history": ["1"], "candidates": ["zz"]}, ["body", "candidates"]),
        ({"history": ["1"], "topk": 3}, ["body", "topk"]),  # the pipeline's own "unknown parameter" error
        ({"inputs": [{"history": ["1"], "extra": 1}]}, ["body", "inputs", 0, "extra"]),
        ({"inputs": []}, ["body", "inputs"]),
        ({"history": ["1"], "explain": True, "explain_steps": 10_000}, ["body", "explain_steps"]),
        ({"history": ["1"], "explain": True, "explain_method": "magic"}, ["body", "explain_method"]),
        ({"history": ["1"], "precision": "int8"}, ["body", "precision"]),  # chosen at load time, not per request
    ],
)
def test_bad_requests_get_422_naming_the_field(recommend, body, loc):
    with TestClient(create_app(recommend, max_history=10)) as client:
        response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    assert loc in locs(response)


@pytest.mark.parametrize(
    "body, words",
    [
        ({"top_k": 3}, ['"history"', '"history_text"', '"inputs"']),
        ({"history": ["1"], "history_text": ["x"]}, ['"history"', '"history_text"']),
        ({"history": ["1"], "inputs": [{"history": ["2"]}]}, ['"inputs"']),
        ({"history": ["1"], "batch_size": 4}, ["batch_size", "--max_batch_size"]),
    ],
)
def test_ambiguous_bodies_get_422_saying_what_to_send(recommend, body, words):
    with TestClient(create_app(recommend)) as client:
        response = client.post("/recommend", json=body)
    assert response.status_code == 422
    message = " ".join(item["msg"] for item in response.json()["detail"])
    assert all(word in message for word in words), message


def test_malformed_json_is_a_422_and_the_input_is_not_echoed(client):
    response = client.post("/recommend", content=b'{"history": [', headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    response = client.post("/recommend", json={"history": ["secret-item-1"] * 3, "top_k": -1}, headers=AUTH)
    assert response.status_code == 422 and "secret-item-1" not in response.text


# ----------------------------------------------------------------------------- 401 and the open health check
@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer wrong"}, "wrong API key"),
        ({"X-API-Key": "wrong"}, "wrong API key"),
        ({"Authorization": f"Basic {KEY}"}, "missing API key"),  # only the Bearer scheme carries the key
        ({"Authorization": f"Bearer {KEY}x"}, "wrong API key"),
    ],
)
def test_recommend_and_metrics_need_the_api_key(client, headers, message):
    for response in (client.post("/recommend", json={"history": ["1"]}, headers=headers), client.get("/metrics", headers=headers)):
        assert response.status_code == 401
        assert response.json()["detail"].startswith(message)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert KEY not in response.text


def test_both_header_styles_are_accepted(client):
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}):
        assert client.post("/recommend", json={"history": ["1"]}, headers=headers).status_code == 200
        assert client.get("/metrics", headers=headers).status_code == 200


def test_an_unauthenticated_bad_request_gets_401_not_the_validation_details(client):
    assert client.post("/recommend", json={"top_k": "x"}).status_code == 401


def test_healthz_is_open(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_without_an_api_key_everything_is_open(recommend):
    with TestClient(create_app(recommend)) as client:
        assert client.post("/recommend", json={"history": ["1"]}).status_code == 200
        assert client.get("/metrics").status_code == 200


# ----------------------------------------------------------------------------- metrics
def test_metrics_count_requests_by_route_and_status_and_name_the_model(client, checkpoint):
    client.post("/recommend", json={"history": ["1"]}, headers=AUTH)
    client.post("/recommend", json={"history": ["1"]}, headers=AUTH)
    client.post("/recommend", json={"history": ["1"], "top_k": 0}, headers=AUTH)
    client.post("/recommend", json={"history": ["1"]})
    client.get("/healthz")
    client.get("/nowhere")
    text = client.get("/metrics", headers=AUTH).text

    def sample(metric: str, **labels: str) -> float:
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        braces = f"{{{label_text}}}" if labels else ""
        match = re.search(rf"^{metric}{re.escape(braces)} (\S+)$", text, re.MULTILINE)
        assert match, f"{metric}{braces} not in:\n{text}"
        return float(match.group(1))

    assert sample("seqrec_requests_total", method="POST", route="/recommend", status="200") == 2
    assert sample("seqrec_requests_total", method="POST", route="/recommend", status="422") == 1
    assert sample("seqrec_requests_total", method="POST", route="/recommend", status="401") == 1
    assert sample("seqrec_requests_total", method="GET", route="/healthz", status="200") == 1
    assert sample("seqrec_requests_total", method="GET", route="unmatched", status="404") == 1  # no raw paths as labels
    assert "/nowhere" not in text
    assert sample("seqrec_request_duration_seconds_count", route="/recommend") == 4
    assert sample("seqrec_request_duration_seconds_bucket", le="+Inf", route="/recommend") == 4
    assert sample("seqrec_batch_size_count") == 2  # the 422 and 401 requests never reached the model
    revision, _ = checkpoint_revision(checkpoint)
    assert sample(
        "seqrec_model_info", backbone="tiny-llama", name=str(checkpoint), precision="fp32",
        revision=revision, revision_source="sha256-of-files",
    ) == 1


def test_the_revision_changes_with_the_checkpoint_files(checkpoint, recommend, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    assert checkpoint_revision(copy) == checkpoint_revision(checkpoint)
    (copy / "item_catalog.jsonl").write_text((copy / "item_catalog.jsonl").read_text().replace("Film", "Movie"))
    assert checkpoint_revision(copy) != checkpoint_revision(checkpoint)
    assert model_revision(recommend.model) == checkpoint_revision(checkpoint)
    assert checkpoint_revision(checkpoint)[1] == "sha256-of-files"


def test_a_hub_snapshot_reports_its_commit(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--someone--recommender" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    model = type("Loaded", (), {"name_or_path": str(snapshot)})()
    assert model_revision(model) == (commit, "hub-commit")


# ----------------------------------------------------------------------------- batching
def _concurrently(app, bodies: list[dict]) -> list[httpx.Response]:
    """Send all bodies at once through the ASGI app (inside its lifespan, as a server would)."""

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(*(client.post("/recommend", json=body) for body in bodies))

    return asyncio.run(main())


def test_concurrent_requests_share_forward_passes(recommend):
    app = create_app(recommend, batch_wait_ms=500, max_batch_size=32)
    # Different parameters and lengths: postprocessing parameters do not split the forward pass.
    bodies = [{"history": [str(i + 1), str(i + 2), str(i + 5)][: 1 + i % 3], "top_k": 1 + i % 4} for i in range(8)]
    responses = _concurrently(app, bodies)
    assert [r.status_code for r in responses] == [200] * 8
    for body, response in zip(bodies, responses):
        want = direct(recommend, {"history": body["history"]}, top_k=body["top_k"])
        assert_same(response.json()["recommendations"], want)
    engine, registry = app.state.engine, app.state.metrics.registry
    assert engine.forward_passes < len(bodies)
    assert registry.get_sample_value("seqrec_batch_size_count") == engine.forward_passes
    assert registry.get_sample_value("seqrec_batch_size_sum") == len(bodies)


def test_max_batch_size_bounds_each_forward_pass(recommend):
    app = create_app(recommend, batch_wait_ms=500, max_batch_size=3)
    sizes: list[int] = []
    app.state.engine.on_forward = sizes.append
    responses = _concurrently(app, [{"history": [str(i + 1)]} for i in range(8)])
    assert [r.status_code for r in responses] == [200] * 8
    assert sum(sizes) == 8 and max(sizes) <= 3 and len(sizes) < 8


def test_a_bad_request_in_a_batch_fails_alone(recommend):
    app = create_app(recommend, batch_wait_ms=500)
    bodies = [{"history": ["1"]}, {"history": ["999"]}, {"history": ["1"], "candidates": ["zz"]}, {"history": ["2"]}]
    responses = _concurrently(app, bodies)
    assert [r.status_code for r in responses] == [200, 422, 422, 200]
    assert_same(responses[0].json()["recommendations"], direct(recommend, {"history": ["1"]}))
    assert_same(responses[3].json()["recommendations"], direct(recommend, {"history": ["2"]}))


def test_too_many_waiting_histories_get_503(recommend):
    app = create_app(recommend, batch_wait_ms=500, max_pending=2)
    responses = _concurrently(app, [{"history": ["1"]}] * 4)
    assert sorted(r.status_code for r in responses) == [200, 200, 503, 503]
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["Retry-After"] == "1" and "max_pending=2" in rejected.json()["detail"]


def test_a_failing_model_is_a_500_without_details(recommend, monkeypatch):
    def broken_forward(*args, **kwargs):
        raise RuntimeError("tensor shapes do not match: internal detail")

    monkeypatch.setattr(recommend, "forward", broken_forward)
    with TestClient(create_app(recommend)) as client:
        response = client.post("/recommend", json={"history": ["1"]})
        assert response.status_code == 500 and "internal detail" not in response.text
        assert client.get("/healthz").status_code == 200  # the service stays up
        assert 'status="500"' in client.get("/metrics").text


# ----------------------------------------------------------------------------- limits: body size and time
def _rejected(app, reason: str) -> float:
    return app.state.metrics.registry.get_sample_value("seqrec_rejected_requests_total", {"reason": reason})


def test_a_body_over_max_body_bytes_is_a_413_before_it_is_parsed(recommend):
    app = create_app(recommend, max_body_bytes=200)
    with TestClient(app) as client:
        assert client.post("/recommend", json={"history": ["1", "2"]}).status_code == 200
        # Not JSON at all: a parsed body would be a 422; an unread one is refused on its Content-Length.
        response = client.post("/recommend", content=b"{" * 201, headers={"content-type": "application/json"})
        assert response.status_code == 413
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body"] and detail["type"] == "body_too_large"
        assert "201 bytes" in detail["msg"] and "at most 200 bytes" in detail["msg"]
        text = client.get("/metrics").text
    assert 'seqrec_requests_total{method="POST",route="/recommend",status="413"} 1.0' in text
    assert _rejected(app, "body_too_large") == 1 and _rejected(app, "timeout") == 0


def test_a_chunked_body_is_cut_off_at_max_body_bytes(recommend):
    """No Content-Length: the bytes are counted as they arrive, and reading stops at the limit."""
    app = create_app(recommend, max_body_bytes=1000)
    sent = []

    async def chunks():
        for _ in range(100):  # 10 kB in 100-byte chunks
            sent.append(100)
            yield b" " * 100

    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                request = client.build_request("POST", "/recommend", content=chunks(), headers={"content-type": "application/json"})
                assert "content-length" not in request.headers
                return await client.send(request)

    response = asyncio.run(main())
    assert response.status_code == 413
    assert "more than 1000 bytes" in response.json()["detail"][0]["msg"]
    assert len(sent) <= 11  # the 11th chunk crossed the limit; the rest was never read
    assert _rejected(app, "body_too_large") == 1


def test_a_request_over_request_timeout_s_is_a_503_and_the_service_stays_up(recommend, monkeypatch):
    forward = recommend.forward

    def slow_forward(*args, **kwargs):
        time.sleep(1.0)
        return forward(*args, **kwargs)

    monkeypatch.setattr(recommend, "forward", slow_forward)
    app = create_app(recommend, request_timeout_s=0.2, batch_wait_ms=1)
    with TestClient(app) as client:
        started = time.perf_counter()
        response = client.post("/recommend", json={"history": ["1"]})
        assert time.perf_counter() - started < 0.9  # answered at the timeout, not when the model finished
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "request_timeout_s" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200
        text = client.get("/metrics").text
    assert 'seqrec_requests_total{method="POST",route="/recommend",status="503"} 1.0' in text
    assert _rejected(app, "timeout") == 1 and _rejected(app, "body_too_large") == 0


@pytest.mark.parametrize(
    "option, value, words",
    [("--max_body_bytes", "0", "expected a positive whole number"), ("--request_timeout_s", "-1", "expected a positive number of seconds")],
)
def test_the_script_refuses_limits_that_are_not_positive(option, value, words, capsys):
    from hf_seqrec.serving.serve_command import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--model", "m", option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}: {words}" in error


# ----------------------------------------------------------------------------- loading and the script
def test_precision_is_passed_to_the_pipeline_only_when_given(recommend, monkeypatch):
    from hf_seqrec.inference import loading

    calls = []
    model = object()  # a loaded model is passed on as it is
    monkeypatch.setattr(loading, "pipeline", lambda task, **kwargs: calls.append((task, kwargs)))
    load_pipeline(model, precision="int8")
    load_pipeline(model)
    assert calls == [("next-item", {"model": model, "precision": "int8"}), ("next-item", {"model": model})]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="precision must be one of"):
        load_pipeline(recommend.model, precision="fp8")  # the pipeline checks it before any work


def test_serving_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    from hf_seqrec.entry_points import run_cli

    assert run_cli(serve_main, ["--model", str(tmp_path / "does-not-exist")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: --model {tmp_path / 'does-not-exist'}: no such checkpoint directory"
    assert run_cli(serve_main, ["--model", "runs/does-not-exist"]) == 2  # read as a Hub id, which cannot be reached
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --model runs/does-not-exist: cannot load a checkpoint") and "\n" not in error


def test_create_app_refuses_bad_bounds(recommend):
    with pytest.raises(ValueError, match="max_top_k must be a positive integer"):
        create_app(recommend, max_top_k=-1)
    with pytest.raises(ValueError, match="max_body_bytes must be a positive integer"):
        create_app(recommend, max_body_bytes=0)
    with pytest.raises(ValueError, match="request_timeout_s must be a positive number of seconds"):
        create_app(recommend, request_timeout_s=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_script_serves_over_http_and_never_logs_the_key(checkpoint):
    port = _free_port()
    env = script_env(SEQREC_TEST_KEY=KEY)
    command = [sys.executable, str(REPO / "scripts" / "serve.py"), "--model", str(checkpoint), "--port", str(port),
               "--api_key_env", "SEQREC_TEST_KEY", "--threads", "1", "--max_body_bytes", "1000"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # a busy machine can take minutes to import torch and transformers
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 300 s"
            time.sleep(0.25)
        ok = httpx.post(f"{url}/recommend", json={"history": ["1", "2"], "top_k": 2}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200 and [r["rank"] for r in ok.json()["recommendations"]] == [1, 2]
        assert httpx.post(f"{url}/recommend", json={"history": ["1"]}, headers={"X-API-Key": "nope"}).status_code == 401
        too_large = httpx.post(f"{url}/recommend", json={"history": ["1"] * 500}, headers={"X-API-Key": KEY})
        assert too_large.status_code == 413 and too_large.json()["detail"][0]["loc"] == ["body"]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert '"POST /recommend HTTP/1.1" 200' in output and '"POST /recommend HTTP/1.1" 401' in output  # the access log
    assert KEY not in output and "nope" not in output


def test_the_script_refuses_an_unset_key_variable(checkpoint, monkeypatch, capsys):
    monkeypatch.delenv("SEQREC_UNSET_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--model", str(checkpoint), "--api_key_env", "SEQREC_UNSET_KEY"])
    assert exit_info.value.code == 2
    assert "SEQREC_UNSET_KEY" in capsys.readouterr().err
