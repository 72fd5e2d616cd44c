"""The HTTP client for the aireiter API: the one way in to HTTP for the worker.

One `ApiClient` per worker process, shared by its threads. A poll's GET goes through libcurl
(`curl_transport.py`), at about a third of the CPU under many threads; every POST (a submit,
a query) goes through one urllib3 connection pool (`transport.py`), which never sends a
request twice. Every call has a (connect, read) timeout, and every failure becomes an
`ApiError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from imageq.config import ApiSettings
from imageq.worker.domain.params import GenerationParams
from imageq.worker.errors import ApiError, ApiUnavailable, TaskNotFound
from imageq.worker.metrics import API_RATE_LIMITED, count_api_request
from imageq.worker.upstream.curl_loop import CurlLoop
from imageq.worker.upstream.curl_transport import CurlTransport
from imageq.worker.upstream.responses import RemoteTask, error_for_http, parse_task
from imageq.worker.upstream.transport import Answer, PoolTransport, Transport

SUBMIT_PATH = "/api/openapi/submit"
QUERY_PATH = "/api/openapi/query"
TASK_PATH = "/v1/tasks/{task_id}"


@dataclass(frozen=True, slots=True)
class TaskReply:
    """What a GET of a task sent by `ApiClient.get_task_later` got: an answer or an error."""

    task_id: str
    path: str
    started: float  # time.monotonic() when it was sent
    outcome: Answer | ApiError


class ApiClient:
    """Submit and query tasks. Thread-safe; never exposes the API key."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        max_connections: int = 10,
        transport: Transport | None = None,
    ) -> None:
        """`max_connections`: how many connections each transport keeps for reuse, at least the
        number of threads that call the API at once; `transport` replaces both transports
        (tests, the benchmark)."""
        if settings.key is None:
            raise ValueError("api.key is not set (IMAGEQ_API__KEY)")
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._transport = transport or PoolTransport(
            self._base_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_connections=max_connections,
        )
        self._reads = transport or CurlTransport(
            self._base_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_connections=max_connections,
        )
        common = {
            "Authorization": f"Bearer {settings.key.get_secret_value()}",
            "User-Agent": settings.user_agent,
            "Accept": "application/json",
        }
        self._headers = common
        self._json_headers = {**common, "Content-Type": "application/json"}
        # Set once GET /v1/tasks/{id} answers 404/405 and the POST query works instead.
        self._query_by_post = False
        self._loop: CurlLoop | None = None

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self._base_url!r})"

    def submit(self, out_task_id: str, params: GenerationParams) -> RemoteTask:
        """POST a generation request. Not idempotent: callers look up before resubmitting."""
        body = {
            "model": self._settings.model,
            "params": params.to_api(reference_images_field=self._settings.reference_images_field),
            "out_task_id": out_task_id,
        }
        return parse_task(self._request("POST", SUBMIT_PATH, json_body=body, endpoint="submit"))

    def get_task(self, task_id: str) -> RemoteTask:
        """The task's state: `GET /v1/tasks/{id}`, or the POST query where that path is absent."""
        if not self._query_by_post:
            try:
                return parse_task(self._request("GET", _task_path(task_id), endpoint="task"))
            except ApiError as error:
                if error.http_status not in (404, 405):
                    raise
            return self._query_instead(task_id)
        return self._query({"task_id": task_id})

    def start_loop(self) -> bool:
        """From now on `get_task_later` sends its GETs from one thread (`CurlLoop`); False where
        reads do not go through libcurl (a transport was given)."""
        if self._loop is None and isinstance(self._reads, CurlTransport):
            self._loop = CurlLoop(self._reads)
            self._loop.start()
        return self._loop is not None

    def stop_loop(self) -> None:
        """Stop the loop (its GETs in flight are dropped, their `done` never called);
        `get_task_later` returns False from now on."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()

    def get_task_later(self, task_id: str, done: Callable[[TaskReply], None]) -> bool:
        """Send the task's GET through the loop; `done` gets the reply on the loop's thread and
        should hand it to `task_from` on another. False, with nothing sent, where there is no
        loop (or it failed) or the API wants the POST query: call `get_task` then."""
        loop = self._loop
        if loop is None or self._query_by_post or not loop.running:
            return False
        path = _task_path(task_id)
        started = time.monotonic()

        def reply(outcome: Answer | ApiError) -> None:
            done(TaskReply(task_id, path, started, outcome))

        loop.send(path, self._headers, reply)
        return True

    def task_from(self, reply: TaskReply) -> RemoteTask:
        """The task a reply of `get_task_later` holds, or its `ApiError`; where the GET path is
        absent (404/405), the task by the POST query instead."""
        outcome = reply.outcome
        try:
            if isinstance(outcome, ApiError):
                count_api_request("task", None, started=reply.started)
                raise outcome
            return parse_task(self._read("GET", reply.path, "task", reply.started, outcome))
        except ApiError as error:
            if error.http_status not in (404, 405):
                raise
        return self._query_instead(reply.task_id)

    def query_task(self, task_id: str) -> RemoteTask:
        """The task by the documented POST query, whose answer reports `credits_used`."""
        return self._query({"task_id": task_id})

    def find_by_out_task_id(self, out_task_id: str) -> RemoteTask | None:
        """The task the API holds for our own id, or None if it has none."""
        try:
            return self._query({"out_task_id": out_task_id})
        except TaskNotFound:
            return None

    def _query_instead(self, task_id: str) -> RemoteTask:
        """The task by the POST query, which every later poll uses too: the GET path is absent."""
        task = self._query({"task_id": task_id})
        self._query_by_post = True
        return task

    def _query(self, body: dict[str, str]) -> RemoteTask:
        return parse_task(self._request("POST", QUERY_PATH, json_body=body, endpoint="query"))

    def close(self) -> None:
        """Stop the loop and close the pooled connections; the client is not used after this."""
        self.stop_loop()
        self._transport.close()
        if self._reads is not self._transport:
            self._reads.close()

    def _request(self, method: str, path: str, *, endpoint: str, json_body: Any = None) -> object:
        if json_body is None:
            body, headers = None, self._headers
        else:
            body, headers = json.dumps(json_body, allow_nan=False).encode(), self._json_headers
        started = time.monotonic()
        try:
            sender = self._reads if method == "GET" else self._transport
            answer = sender.send(method, path, body=body, headers=headers)
        except ApiError:
            count_api_request(endpoint, None, started=started)
            raise
        return self._read(method, path, endpoint, started, answer)

    def _read(
        self, method: str, path: str, endpoint: str, started: float, answer: Answer
    ) -> object:
        """The JSON of a successful answer; an `ApiError` for any other."""
        status = answer.status
        count_api_request(endpoint, status, started=started)
        if status == 429:
            API_RATE_LIMITED.inc()
        if not 200 <= status < 300:
            text = answer.body.decode("utf-8", errors="replace")
            raise error_for_http(status, text, answer.headers)
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError):
            raise ApiUnavailable(
                f"{method} {path}: HTTP {status} with a body that is not JSON",
                http_status=status,
            ) from None


def _task_path(task_id: str) -> str:
    return TASK_PATH.format(task_id=quote(task_id, safe=""))
