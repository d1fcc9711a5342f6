"""The HTTP server of one or more bundles (or runs): each route answers JSON, requests share batches.

    POST /caption     multipart `image` [, `lang`]                 {"caption"}
    POST /transcribe  `audio` [, `lang`]                            {"text"}
    POST /answer      `image` and `question` (text) and/or `audio`  {"answer", "top": [[answer, probability], ...]}
    POST /embed       one of `text`, `image`, `audio`               {"modality", "embedding"}
    POST /search      one of `text`, `image`, `audio` [, `top`]     {"results": [{"file", "rank", "score", ...}]}
    POST /draw        `text` [, `lang`]                             {"png_base64"}
    GET  /health      {"status": "ok", "routes": [...]};  GET /metrics  Prometheus' text format

A route exists when a bundle's task offers it (caption: /caption, /transcribe; vqa: /answer; retrieval: /embed,
/search with --index; t2i: /draw); each answers a made-up request at start, so that its graphs are loaded before the
server listens. A bad request is a 4xx JSON {"error"} naming the problem, and the server goes on.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import python_multipart
import soundfile as sf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from src.api import Model
from src.data.errors import FeatureError
from src.serve.batching import Batcher, Busy
from src.serve.metrics import Metrics

ROUTES_OF = {"caption": ("caption", "transcribe"), "vqa": ("answer",), "retrieval": ("embed", "search"),
             "t2i": ("draw",)}


@dataclass
class Limits:
    max_body: int = 10 * 2**20      # bytes of a request body
    max_audio_seconds: float = 30.0  # a recording longer than this is refused
    timeout: float = 30.0           # seconds a request may wait and run
    queue: int = 64                 # requests waiting per route; more are answered 503
    window: float = 0.01            # seconds a batch waits for more requests after its first
    max_batch: int = 16             # requests per model call


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyLimit:
    """ASGI middleware: a body longer than `limit` bytes (declared or streamed) is answered 413 before any route
    reads it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_large(int(declared), self.limit)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BadRequest(413, f"the request body is over {self.limit} bytes, the most this server takes")
            return message
        await self.app(scope, limited, send)


def too_large(size: int, limit: int) -> Response:
    return JSONResponse({"error": f"the request body is {size} bytes; this server takes at most {limit}"}, 413)


def build_app(models: List[Model], index: Optional[str] = None, limits: Limits = Limits()) -> Starlette:
    """The app serving `models` (loaded bundles or runs); `index`: the search index folder /search asks."""
    metrics, executor = Metrics(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    runners = {}
    for model in models:
        for route in ROUTES_OF.get(model.task, ()):
            if route == "search" and index is None:
                continue
            runners.setdefault(route, RUNNERS[route](model, index))
    if not runners:
        raise ValueError(f"nothing to serve: the tasks {[m.task for m in models]} offer no route "
                         f"(caption, vqa, retrieval with --index, t2i)")
    batchers: Dict[str, Batcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        for route, run in runners.items():  # load (or build) each route's graphs before the first request
            await loop.run_in_executor(executor, run, [WARM_UP[route]()])
            batchers[route] = Batcher(route, run, limits.max_batch, limits.window, limits.queue, executor, metrics)
            batchers[route].start()
        yield  # uvicorn stops on SIGTERM or SIGINT once the requests in flight are answered
        for batcher in batchers.values():
            batcher.task.cancel()
        executor.shutdown(wait=True)

    def endpoint(route: str) -> Callable:
        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                item = await PARSERS[route](request, limits)
                result = await batchers[route].submit(item, limits.timeout)
                response = JSONResponse(result)
            except BadRequest as e:
                response = JSONResponse({"error": str(e)}, e.status)
            except FeatureError as e:
                response = JSONResponse({"error": str(e).split(": ", 1)[-1]}, 422)
            except Busy:
                response = JSONResponse({"error": f"/{route} is busy: {limits.queue} requests wait already; try "
                                                  "again shortly"}, 503, headers={"Retry-After": "1"})
            except asyncio.TimeoutError:
                response = JSONResponse({"error": f"no answer within {limits.timeout:g} s"}, 504)
            metrics.request(route, response.status_code, time.perf_counter() - started)
            return response
        return handle

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "routes": sorted(runners),
                             "tasks": [m.task for m in models]})

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc) -> Response:
        return JSONResponse({"error": f"no route {request.method} {request.url.path} (this server answers: "
                                      f"{', '.join('/' + r for r in sorted(runners))}, /health, /metrics)"},
                            getattr(exc, "status_code", 404))

    routes = [Route(f"/{r}", endpoint(r), methods=["POST"]) for r in runners]
    routes += [Route("/health", health), Route("/metrics", prometheus)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(BodyLimit, limit=limits.max_body)],
                    exception_handlers={404: not_found, 405: not_found})
    app.state.metrics, app.state.batchers, app.state.models = metrics, batchers, models
    return app


# ----------------------------------------------------------------------------------------------------------------------
# Requests -> what a batch run takes
# ----------------------------------------------------------------------------------------------------------------------
async def form_of(request: Request, allowed: tuple) -> dict:
    """The fields of a multipart (or urlencoded) body, each as its bytes: text fields are decoded by the route, as
    UTF-8 or refused (Starlette's own form parser falls back to Latin-1 without telling)."""
    body = await request.body()  # BodyLimit has bounded it
    fields = {}

    def on_field(field):
        fields[field.field_name.decode("utf-8", "replace")] = field.value or b""

    def on_file(file):
        file.file_object.seek(0)
        fields[file.field_name.decode("utf-8", "replace")] = file.file_object.read()
    headers = {"Content-Type": request.headers.get("content-type", "").encode("latin-1"),
               "Content-Length": str(len(body)).encode()}
    try:
        python_multipart.parse_form(headers, io.BytesIO(body), on_field, on_file)
    except Exception as e:
        raise BadRequest(400, f"the body is not a multipart or urlencoded form ({e})") from None
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise BadRequest(400, f"unknown field '{unknown[0]}' (this route reads {', '.join(allowed)})")
    return fields


def text_field(fields: dict, name: str) -> Optional[str]:
    """A text field, decoded as UTF-8 (None when absent)."""
    if fields.get(name) is None:
        return None
    raw = fields[name]
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"field '{name}' is not UTF-8 text (byte 0x{raw[e.start]:02x} at {e.start})") from None
    if not value.strip():
        raise BadRequest(400, f"field '{name}' is empty")
    return value


def file_field(fields: dict, name: str) -> Optional[bytes]:
    """A file field's bytes (None when absent)."""
    if fields.get(name) is not None and not fields[name]:
        raise BadRequest(400, f"field '{name}' is empty")
    return fields.get(name)


def audio_field(fields: dict, limits: Limits) -> Optional[bytes]:
    data = file_field(fields, "audio")
    if data is None:
        return None
    try:
        seconds = sf.info(io.BytesIO(data)).duration
    except Exception:
        raise BadRequest(422, "field 'audio' is not a recording soundfile can read (WAV, FLAC, OGG, MP3)") from None
    if seconds > limits.max_audio_seconds:
        raise BadRequest(413, f"the recording is {seconds:.0f} s long; this server takes at most "
                              f"{limits.max_audio_seconds:g} s")
    return data


def need(value, message: str):
    if value is None:
        raise BadRequest(400, message)
    return value


async def parse_caption(request: Request, limits: Limits):
    fields = await form_of(request, ("image", "lang"))
    return need(file_field(fields, "image"), "POST /caption reads an image in the field 'image'"), \
        text_field(fields, "lang") or "en"


async def parse_transcribe(request: Request, limits: Limits):
    fields = await form_of(request, ("audio", "lang"))
    return need(audio_field(fields, limits), "POST /transcribe reads a recording in the field 'audio'"), \
        text_field(fields, "lang") or "en"


async def parse_answer(request: Request, limits: Limits):
    fields = await form_of(request, ("image", "question", "audio", "lang"))
    question, audio = text_field(fields, "question"), audio_field(fields, limits)
    if question is None and audio is None:
        raise BadRequest(400, "POST /answer needs a question: the field 'question' (text), 'audio' (spoken) or both")
    image = need(file_field(fields, "image"), "POST /answer needs the image the question is about, field 'image'")
    return image, question, audio, text_field(fields, "lang") or "en"


async def parse_query(request: Request, limits: Limits, route: str, extra: tuple = ()):
    fields = await form_of(request, ("text", "image", "audio", "lang") + extra)
    given = {"text": text_field(fields, "text"), "image": file_field(fields, "image"),
             "audio": audio_field(fields, limits)}
    given = {m: v for m, v in given.items() if v is not None}
    if len(given) != 1:
        raise BadRequest(400, f"POST /{route} reads one of the fields 'text', 'image', 'audio'")
    (modality, value), = given.items()
    return modality, value, text_field(fields, "lang") or "en", fields


async def parse_embed(request: Request, limits: Limits):
    return (await parse_query(request, limits, "embed"))[:3]


async def parse_search(request: Request, limits: Limits):
    modality, value, lang, fields = await parse_query(request, limits, "search", ("top",))
    top = text_field(fields, "top") or "10"
    if not top.isdigit() or not 1 <= int(top) <= 100:
        raise BadRequest(400, f"field 'top' must be a whole number from 1 to 100, got '{top}'")
    return modality, value, lang, int(top)


async def parse_draw(request: Request, limits: Limits):
    fields = await form_of(request, ("text", "lang"))
    return need(text_field(fields, "text"), "POST /draw reads a caption in the field 'text'"), \
        text_field(fields, "lang") or "en"


PARSERS = {"caption": parse_caption, "transcribe": parse_transcribe, "answer": parse_answer, "embed": parse_embed,
           "search": parse_search, "draw": parse_draw}


# ----------------------------------------------------------------------------------------------------------------------
# Batch runs (in the model thread): items -> a result or an exception per item
# ----------------------------------------------------------------------------------------------------------------------
def grouped(items: list, key: Callable, run: Callable[[list], list]) -> list:
    """run(items of one key) for each key, the results back in the items' order."""
    out = [None] * len(items)
    groups: Dict[object, List[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    for rows in groups.values():
        for i, result in zip(rows, run([items[i] for i in rows])):
            out[i] = result
    return out


def each_alone_on_failure(run: Callable[[list], list]) -> Callable[[list], list]:
    """A run that raises for a whole batch is retried item by item, so one bad input fails alone."""
    def safe(items: list) -> list:
        try:
            return run(items)
        except FeatureError:
            results = []
            for item in items:
                try:
                    results.extend(run([item]))
                except FeatureError as e:
                    results.append(e)
            return results
    return safe


def text_runner(method: str, key: str) -> Callable:
    """The run of a route answering {key: text} from model.<method>(inputs, lang=...) (caption, transcribe)."""
    def make(model: Model, index=None):
        def run(items):
            return grouped(items, lambda it: it[1], lambda group: [
                r if isinstance(r, Exception) else {key: r}
                for r in getattr(model, method)([x for x, _ in group], lang=group[0][1], errors="return")])
        return run
    return make


def answer_runner(model: Model, index=None):
    def one_form(group):
        images = [g[0] for g in group]
        questions = [g[1] for g in group] if group[0][1] is not None else []
        audios = [g[2] for g in group] if group[0][2] is not None else []
        rows = model.answer(images, questions, audios, lang=group[0][3], scores=True, errors="return")
        return [r if isinstance(r, Exception) else {"answer": r[0], "top": [[a, round(p, 5)] for a, p in r[1]]}
                for r in rows]
    return lambda items: grouped(items, lambda it: (it[1] is None, it[2] is None, it[3]), one_form)


def embed_runner(model: Model, index=None):
    def one_modality(group):
        modality, lang = group[0][0], group[0][2]
        vectors = model.embed(**{f"{modality}s": [g[1] for g in group]}, lang=lang)[modality]
        return [{"modality": modality, "embedding": [round(float(x), 6) for x in v]} for v in vectors]
    return lambda items: grouped(items, lambda it: (it[0], it[2]), each_alone_on_failure(one_modality))


def search_runner(model: Model, index=None):
    def one_modality(group):
        modality, lang, top = group[0][0], group[0][2], max(g[3] for g in group)
        values = [g[1] for g in group]
        found = model.search(index, values if modality == "text" else (), images=values if modality == "image"
                             else (), audios=values if modality == "audio" else (), top=top, lang=lang)
        return [{"results": [{k: v for k, v in r.items() if k != "query"} for r in results[:g[3]]]}
                for g, results in zip(group, found)]
    return lambda items: grouped(items, lambda it: (it[0], it[2]), each_alone_on_failure(one_modality))


def draw_runner(model: Model, index=None):
    def run(group):
        images = model.draw([caption for caption, _ in group], lang=group[0][1])
        return [{"png_base64": base64.b64encode(cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()).decode()}
                for image in images]
    return lambda items: grouped(items, lambda it: it[1], each_alone_on_failure(run))


def warm_image() -> bytes:
    return cv2.imencode(".png", np.full((32, 32, 3), 128, np.uint8))[1].tobytes()


def warm_recording() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16000, np.float32), 16000, format="WAV")
    return buffer.getvalue()


# a request of each route, run once at start so that the first real one does not wait for the graphs
WARM_UP = {"caption": lambda: (warm_image(), "en"), "transcribe": lambda: (warm_recording(), "en"),
           "answer": lambda: (warm_image(), "what is it?", None, "en"), "embed": lambda: ("text", "warm up", "en"),
           "search": lambda: ("text", "warm up", "en", 1), "draw": lambda: ("warm up", "en")}
RUNNERS = {"caption": text_runner("caption", "caption"), "transcribe": text_runner("transcribe", "text"),
           "answer": answer_runner,
           "embed": embed_runner, "search": search_runner, "draw": draw_runner}
