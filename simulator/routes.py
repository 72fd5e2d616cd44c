"""The aiohttp application: the aireiter API routes, generated files, and `/_sim` introspection."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from imageq.simulator.bodies import code_error, query_body, status_error, submit_body
from imageq.simulator.markers import Fault, fault_for_attempt
from imageq.simulator.phases import Phase
from imageq.simulator.picture import Caption, caption_png
from imageq.simulator.png import padded_png
from imageq.simulator.rate_limit import RateLimits, endpoint_of, key_digest
from imageq.simulator.sim_config import SimConfig
from imageq.simulator.state import SimState, Task
from imageq.simulator.submission import SubmitError, parse_submit

SIM: Final = web.AppKey("sim", SimState)
LIMITS: Final = web.AppKey("limits", RateLimits)
GARBAGE_BODY: Final = "<html>bad gateway</html>"
SAFETY_MESSAGE: Final = "prompt rejected by content safety review"
_API_PREFIXES: Final = ("/api/", "/v1/")


def create_app(config: SimConfig) -> web.Application:
    """A fresh simulator application with empty state."""
    app = web.Application(middlewares=[api_gate])
    app[SIM] = SimState(config)
    app[LIMITS] = RateLimits(limit_per_s=config.rate_limit_per_s)
    app.router.add_post("/api/openapi/submit", submit)
    app.router.add_post("/api/openapi/query", query_by_body)
    if config.v1_tasks:
        app.router.add_get("/v1/tasks/{task_id}", query_by_path)
    app.router.add_get(r"/files/{task_id}/{n:\d+}.png", serve_file)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/faults", set_faults)
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_post("/_sim/throttle", throttle)
    return app


@web.middleware
async def api_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API requests are counted, delayed and key-checked; unknown routes answer JSON errors."""
    sim = request.app[SIM]
    is_api = request.path.startswith(_API_PREFIXES)
    if is_api and sim.refusing:
        return _drop_connection(request)
    if is_api:
        sim.requests += 1
        delay_s = sim.config.request_delay_distribution().sample(sim.rng)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
    routing_error = request.match_info.http_exception
    if routing_error is not None:
        message = "not found" if routing_error.status == 404 else routing_error.reason.lower()
        return web.json_response(
            status_error(routing_error.status, message), status=routing_error.status
        )
    if is_api and not _authorized(request, sim.config.api_key):
        return web.json_response(status_error(401, "invalid api key"), status=401)
    if not is_api:
        return await handler(request)
    return await _limited(request, handler)


async def _limited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An authorized API request: logged by key, and answered 429 past the key's limit."""
    limits = request.app[LIMITS]
    digest = key_digest(sim_key(request))
    arrived_at = time.time()
    admitted, retry_after_s = limits.admit(digest)
    if admitted:
        response = await handler(request)
    else:
        headers = {} if retry_after_s is None else {"Retry-After": str(retry_after_s)}
        response = web.json_response(code_error(429, "rate limited"), status=429, headers=headers)
    limits.record(digest, arrived_at, endpoint_of(request.path), response.status)
    return response


async def submit(request: web.Request) -> web.StreamResponse:
    """`POST /api/openapi/submit`: validate, count, inject faults, then create or re-find."""
    sim = request.app[SIM]
    try:
        submission = parse_submit(await _json_or_none(request))
    except SubmitError as error:
        return web.json_response(code_error(400, str(error)), status=400)
    sim.submits_by_out_task_id[submission.out_task_id] += 1
    attempt = sim.submits_by_out_task_id[submission.out_task_id]
    markers = submission.markers
    if attempt == 1 and markers.submit_delay_s:
        # Held before the task exists: the client may give up or die meanwhile; the task is
        # created all the same (aiohttp lets a handler finish after its client is gone).
        await asyncio.sleep(markers.submit_delay_s)
    fault = fault_for_attempt(markers.submit_faults, attempt) or sim.random_fault(may_drop=False)
    if fault is not None and fault is not Fault.DROP:
        return _fault_response(fault, markers.retry_after_s)
    if markers.unsafe:
        # The platform says "no" inside an HTTP 200: clients must read the body's code.
        return web.json_response(code_error(400, SAFETY_MESSAGE))
    task = sim.find(out_task_id=submission.out_task_id) or sim.create(submission)
    # Accepted: a task exists for it now (answered or not). More than one of these for an
    # out_task_id means the client submitted a job the platform already had: paid twice.
    sim.accepted_submits_by_out_task_id[submission.out_task_id] += 1
    if fault is Fault.DROP:
        return _drop_connection(request)
    return web.json_response(submit_body(task, sim.clock, sim.config.envelope))


async def query_by_body(request: web.Request) -> web.StreamResponse:
    """`POST /api/openapi/query` with `task_id` or `out_task_id`."""
    body = await _json_or_none(request)
    keys = body if isinstance(body, dict) else {}
    task_id, out_task_id = keys.get("task_id"), keys.get("out_task_id")
    if not _nonblank(task_id) and not _nonblank(out_task_id):
        return web.json_response(
            status_error(400, "task_id or out_task_id is required"), status=400
        )
    sim = request.app[SIM]
    if _nonblank(task_id):
        sim.post_queries_by_task_id[str(task_id)] += 1
        return _answer_query(request, sim.find(task_id=task_id), credits=True)
    return _answer_query(request, sim.find(out_task_id=out_task_id), credits=True)


async def query_by_path(request: web.Request) -> web.StreamResponse:
    """`GET /v1/tasks/{task_id}`: the same answer as the POST query."""
    sim = request.app[SIM]
    task = sim.find(task_id=request.match_info["task_id"])
    return _answer_query(request, task, credits=sim.config.credits_in_v1_tasks)


async def serve_file(request: web.Request) -> web.StreamResponse:
    """`GET /files/{task_id}/{n}.png`: the image once the task completed; no key, like a CDN."""
    sim = request.app[SIM]
    task = sim.find(task_id=request.match_info["task_id"])
    n = int(request.match_info["n"])
    if (
        task is None
        or n >= sim.config.images_per_task
        or task.phase(sim.clock.now()) is not Phase.COMPLETED
    ):
        return web.json_response(status_error(404, "file not found"), status=404)
    markers = task.submission.markers
    task.file_requests += 1
    if task.file_requests <= markers.file_404s:
        return web.json_response(status_error(404, "file not found (sim:file404)"), status=404)
    # Drawing a 4K image the first time takes a moment; keep the event loop free meanwhile.
    loop = asyncio.get_running_loop()
    png = await loop.run_in_executor(None, caption_png, _caption(task, n, sim.config))
    return web.Response(body=padded_png(png, markers.file_pad_bytes), content_type="image/png")


async def stats(request: web.Request) -> web.StreamResponse:
    """`GET /_sim/stats`: counters and tasks, for tests and benchmarks."""
    return web.json_response(request.app[SIM].stats())


async def reset(request: web.Request) -> web.StreamResponse:
    """`POST /_sim/reset`: forget everything."""
    request.app[SIM].reset()
    request.app[LIMITS].reset()
    return web.json_response({"ok": True})


async def set_faults(request: web.Request) -> web.StreamResponse:
    """`POST /_sim/faults` `{"rate_429": p, "rate_503": p, "rate_drop": p}`: an outage window."""
    body = await _json_or_none(request)
    if not isinstance(body, dict):
        return web.json_response(status_error(400, "a JSON object is required"), status=400)
    try:
        request.app[SIM].set_fault_rates(
            rate_429=float(body.get("rate_429", 0)),
            rate_503=float(body.get("rate_503", 0)),
            rate_drop=float(body.get("rate_drop", 0)),
        )
    except (TypeError, ValueError) as error:
        return web.json_response(status_error(400, str(error)), status=400)
    return web.json_response({"ok": True})


async def list_requests(request: web.Request) -> web.StreamResponse:
    """`GET /_sim/requests`: every API request by key digest, as
    `[arrived_epoch_s, endpoint, status, answered_epoch_s]`."""
    return web.json_response(request.app[LIMITS].requests())


async def throttle(request: web.Request) -> web.StreamResponse:
    """`POST /_sim/throttle` `{"count": n, "retry_after": s}`: answer the next n API requests
    with 429 (`retry_after` null or absent: without a Retry-After header)."""
    body = await _json_or_none(request)
    if not isinstance(body, dict):
        return web.json_response(status_error(400, "a JSON object is required"), status=400)
    try:
        retry_after = body.get("retry_after")
        request.app[LIMITS].force(
            count=int(body.get("count", 1)),
            retry_after_s=None if retry_after is None else int(retry_after),
        )
    except (TypeError, ValueError) as error:
        return web.json_response(status_error(400, str(error)), status=400)
    return web.json_response({"ok": True})


def _answer_query(request: web.Request, task: Task | None, *, credits: bool) -> web.StreamResponse:
    sim = request.app[SIM]
    if task is None:
        return web.json_response(status_error(404, "task not found"), status=404)
    sim.queries_by_task_id[task.task_id] += 1
    attempt = sim.queries_by_task_id[task.task_id]
    markers = task.submission.markers
    fault = fault_for_attempt(markers.poll_faults, attempt) or sim.random_fault(may_drop=True)
    if fault is Fault.DROP:
        return _drop_connection(request)
    if fault is not None:
        return _fault_response(fault, markers.retry_after_s)
    base_url = f"{request.scheme}://{request.host}"
    body = query_body(
        task,
        sim.clock,
        now_s=sim.clock.now(),
        base_url=base_url,
        images=sim.config.images_per_task,
        credits=sim.config.credits if credits else None,
    )
    return web.json_response(body)


def _caption(task: Task, n: int, config: SimConfig) -> Caption:
    submission = task.submission
    width, height = submission.size
    return Caption(
        prompt=submission.prompt,
        aspect_ratio=submission.aspect_ratio,
        resolution=submission.resolution,
        width=width,
        height=height,
        index=n,
        count=config.images_per_task,
    )


def _fault_response(fault: Fault, retry_after_s: int) -> web.StreamResponse:
    if fault is Fault.RATE_LIMIT:
        headers = {"Retry-After": str(retry_after_s)}
        return web.json_response(code_error(429, "rate limited"), status=429, headers=headers)
    if fault is Fault.UNAVAILABLE:
        return web.json_response(code_error(503, "service unavailable"), status=503)
    return web.Response(text=GARBAGE_BODY, content_type="text/html")


def _drop_connection(request: web.Request) -> web.StreamResponse:
    # Closing the transport first means the response below is never written: the client sees
    # the connection end with no status line at all.
    if request.transport is not None:
        request.transport.close()
    return web.Response()


def sim_key(request: web.Request) -> str:
    """The bearer token a request carries (only ever hashed, never shown)."""
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def _authorized(request: web.Request, api_key: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    )


async def _json_or_none(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _nonblank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
