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
from typing import Any
from urllib.parse import quote

from imageq.config import ApiSettings
from imageq.worker.domain.params import GenerationParams
from imageq.worker.errors import ApiError, ApiUnavailable, TaskNotFound
from imageq.worker.metrics import API_RATE_LIMITED, count_api_request
from imageq.worker.upstream.curl_transport import CurlTransport
from imageq.worker.upstream.responses import RemoteTask, error_for_http, parse_task
from imageq.worker.upstream.transport import PoolTransport, Transport

SUBMIT_PATH = "/api/openapi/submit"
QUERY_PATH = "/api/openapi/query"
TASK_PATH = "/v1/tasks/{task_id}"


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
                path = TASK_PATH.format(task_id=quote(task_id, safe=""))
                return parse_task(self._request("GET", path, endpoint="task"))
            except ApiError as error:
                if error.http_status not in (404, 405):
                    raise
            task = self._query({"task_id": task_id})
            self._query_by_post = True
            return task
        return self._query({"task_id": task_id})

    def query_task(self, task_id: str) -> RemoteTask:
        """The task by the documented POST query, whose answer reports `credits_used`."""
        return self._query({"task_id": task_id})

    def find_by_out_task_id(self, out_task_id: str) -> RemoteTask | None:
        """The task the API holds for our own id, or None if it has none."""
        try:
            return self._query({"out_task_id": out_task_id})
        except TaskNotFound:
            return None

    def _query(self, body: dict[str, str]) -> RemoteTask:
        return parse_task(self._request("POST", QUERY_PATH, json_body=body, endpoint="query"))

    def close(self) -> None:
        """Close the pooled connections; the client is not used after this."""
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
