"""The HTTP server (src/serve): routes answer JSON, concurrent requests share batches, a full queue is 503, and every
bad request is a 4xx JSON error between valid requests that go on being answered."""
import asyncio
import io
import json

import cv2
import numpy as np
import pytest
import soundfile as sf

import export as export_script
from tests.test_export import runs  # noqa: F401 (the fixture: freshly initialised caption and retrieval runs)


@pytest.fixture(scope="module")
def caption_bundle(runs, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("bundles") / "caption"
    assert export_script.main(["--task", "caption", "--ckpt", str(runs["caption"]), "--out", str(out)]) == 0
    return out


def png(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.sin(np.arange(int(16000 * seconds)) / 9.0).astype(np.float32) * 0.1, 16000, format="WAV")
    return buffer.getvalue()


def serve(bundles, **limits):
    """(an httpx client of the app, its lifespan) for `bundles`, in this process."""
    import httpx
    from src.api import load
    from src.serve.app import Limits, build_app
    app = build_app([load(b) for b in bundles], limits=Limits(**limits))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120)
    return app, client


@pytest.mark.e2e
def test_routes_batch_and_bad_requests(caption_bundle):
    from src.api import load
    expected = load(caption_bundle).caption([png(i) for i in range(6)])
    app, client = serve([caption_bundle], max_batch=8, window=0.2, max_body=3 * 2**20, max_audio_seconds=5)

    async def scenario():
        async with app.router.lifespan_context(app):
            assert "caption" in app.state.models[0]._opened  # the graphs are loaded at start, before a request
            health = (await client.get("/health")).json()
            assert health["status"] == "ok" and health["routes"] == ["caption", "transcribe"]
            answers = await asyncio.gather(*(client.post("/caption", files={"image": ("x.png", png(i))})
                                             for i in range(6)))
            assert [r.status_code for r in answers] == [200] * 6
            assert [r.json()["caption"] for r in answers] == expected  # as the API captions them, one batch
            assert app.state.metrics.mean_batch("caption") > 1
            table = {}
            bad = {
                "not an image": client.post("/caption", files={"image": ("x.png", b"hello")}),
                "truncated PNG": client.post("/caption", files={"image": ("x.png", png(0)[:200])}),
                "a 4 MB body": client.post("/caption", files={"image": ("x.png", b"0" * 4 * 2**20)}),
                "a 60-second recording": client.post("/transcribe", files={"audio": ("x.wav", wav(60))}),
                "a wrong field name": client.post("/caption", files={"picture": ("x.png", png(1))}),
                "no image": client.post("/caption", data={"lang": "en"}),
                "an unknown route": client.post("/nowhere", files={"image": ("x.png", png(1))}),
                "GET on a POST route": client.get("/caption"),
                "non-UTF-8 text": client.post("/caption", files={"image": ("x.png", png(1)),
                                                                 "lang": (None, b"\xff\xfe", "text/plain")}),
                "not a form": client.post("/caption", content=b"\x00\x01", headers={"content-type": "text/plain"}),
            }
            for name, request in bad.items():
                response = await request
                table[name] = (response.status_code, response.json().get("error", response.text))
                again = await client.post("/caption", files={"image": ("x.png", png(0))})
                assert again.status_code == 200 and again.json()["caption"] == expected[0], name
            metrics = (await client.get("/metrics")).text
            return table, metrics

    table, metrics = asyncio.run(scenario())
    print(json.dumps(table, indent=1))
    assert table["not an image"][0] == 422 and "cannot decode image" in table["not an image"][1]
    assert table["truncated PNG"][0] == 422
    assert table["a 4 MB body"][0] == 413 and "at most 3145728" in table["a 4 MB body"][1]
    assert table["a 60-second recording"] == (413, "the recording is 60 s long; this server takes at most 5 s")
    assert table["a wrong field name"] == (400, "unknown field 'picture' (this route reads image, lang)")
    assert table["no image"][0] == 400 and "field 'image'" in table["no image"][1]
    assert table["an unknown route"][0] == 404 and "/caption, /transcribe" in table["an unknown route"][1]
    assert table["GET on a POST route"][0] == 405
    assert table["non-UTF-8 text"][0] == 400 and "UTF-8" in table["non-UTF-8 text"][1]
    assert table["not a form"][0] == 400
    assert 'opt_requests_total{route="caption",status="200"} 16' in metrics
    assert 'opt_request_seconds{route="caption",quantile="0.99"}' in metrics


@pytest.mark.e2e
def test_a_full_queue_answers_503_with_retry_after(caption_bundle):
    app, client = serve([caption_bundle], max_batch=1, window=0.0, queue=2)

    async def scenario():
        async with app.router.lifespan_context(app):
            return await asyncio.gather(*(client.post("/caption", files={"image": ("x.png", png(i))})
                                          for i in range(12)))

    responses = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    busy = [r for r in responses if r.status_code == 503]
    assert statuses.count(200) >= 2 and statuses.count(503) >= 8, statuses  # the queue holds 2
    assert busy and busy[0].headers["retry-after"] == "1" and "busy" in busy[0].json()["error"]


@pytest.mark.e2e
def test_serve_sh_answers_on_loopback_and_finishes_in_flight_requests_on_sigterm(caption_bundle, tmp_path):
    """scripts/serve.sh on a free loopback port: /health, then a caption; SIGTERM while a request is in flight
    answers it before the process exits 0. A bundle that is not there is one line, exit 2."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time
    import httpx
    from tests.conftest import ROOT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHON": sys.executable}
    server = subprocess.Popen(["bash", str(ROOT / "scripts" / "serve.sh"), str(caption_bundle), "--port", str(port),
                               "--window-ms", "300"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        first = httpx.post(f"{base}/caption", files={"image": ("x.png", png(0))}, timeout=120)
        assert first.status_code == 200 and first.json()["caption"]
        answered = {}
        request = threading.Thread(target=lambda: answered.update(r=httpx.post(
            f"{base}/caption", files={"image": ("x.png", png(1))}, timeout=120)))
        request.start()
        time.sleep(0.1)  # in its 300 ms batching window when the signal comes
        server.send_signal(signal.SIGTERM)
        request.join(120)
        assert answered["r"].status_code == 200 and answered["r"].json()["caption"]
        assert server.wait(60) == -signal.SIGTERM  # uvicorn ends as the signal asks, once the requests are answered
    finally:
        if server.poll() is None:
            server.kill()
    missing = subprocess.run(["bash", str(ROOT / "scripts" / "serve.sh"), str(tmp_path / "nothing")], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr
    assert "no run, checkpoint or bundle at" in missing.stderr


def test_a_question_needs_its_image_and_an_image_its_question():
    """POST /answer's form: a question with no image, or an image with no question, is a 400 naming what is
    missing; both given (written, spoken) parse."""
    import httpx
    from starlette.requests import Request
    from src.serve.app import BadRequest, Limits, parse_answer

    def parsed(**form):
        built = httpx.Request("POST", "http://test/answer", files=form)
        body = built.read()

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        request = Request({"type": "http", "method": "POST", "path": "/answer",
                           "headers": [(k.lower().encode(), v.encode()) for k, v in built.headers.items()]}, receive)
        return asyncio.run(parse_answer(request, Limits()))

    with pytest.raises(BadRequest, match="needs the image the question is about, field 'image'"):
        parsed(question=(None, b"what is it?"))
    with pytest.raises(BadRequest, match="needs a question: the field 'question' \\(text\\), 'audio'"):
        parsed(image=("x.png", png(0)))
    image, question, audio, lang = parsed(image=("x.png", png(0)), question=(None, "what is it?".encode()),
                                          audio=("q.wav", wav(1)))
    assert image == png(0) and question == "what is it?" and audio[:4] == b"RIFF" and lang == "en"
