"""The HTTP client for the aireiter API: the one way in to HTTP for the worker.

One `ApiClient` per worker process; it keeps one `requests.Session` per thread, since
requests' sessions are not meant to be shared across threads. Every call has a
(connect, read) timeout, and every failure becomes an `ApiError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.exceptions import NewConnectionError

from imageq.config import ApiSettings
from imageq.worker.domain.params import GenerationParams
from imageq.worker.errors import ApiError, ApiUnavailable, ApiUnreachable, TaskNotFound
from imageq.worker.metrics import API_RATE_LIMITED, count_api_request
from imageq.worker.upstream.responses import RemoteTask, error_for_http, parse_task

SUBMIT_PATH = "/api/openapi/submit"
QUERY_PATH = "/api/openapi/query"
TASK_PATH = "/v1/tasks/{task_id}"


class ApiClient:
    """Submit and query tasks. Thread-safe; never exposes the API key."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        if settings.key is None:
            raise ValueError("api.key is not set (IMAGEQ_API__KEY)")
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._session_factory = session_factory
        self._local = threading.local()
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
        return parse_task(self._request("POST", SUBMIT_PATH, json=body, endpoint="submit"))

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
        return parse_task(self._request("POST", QUERY_PATH, json=body, endpoint="query"))

    def _request(self, method: str, path: str, *, endpoint: str, json: Any = None) -> object:
        started = time.monotonic()
        try:
            response = self._session().request(
                method,
                self._base_url + path,
                json=json,
                timeout=(self._settings.connect_timeout_s, self._settings.read_timeout_s),
                allow_redirects=False,
            )
        # `from None`: requests' exceptions hold the prepared request, headers and all, and a
        # chained traceback is one careless log call away from printing them.
        except requests.ConnectTimeout:
            count_api_request(endpoint, None, started=started)
            raise ApiUnreachable(f"{method} {path}: could not connect (timed out)") from None
        except requests.Timeout as error:
            count_api_request(endpoint, None, started=started)
            raise ApiUnavailable(f"{method} {path}: timed out ({type(error).__name__})") from None
        except requests.ConnectionError as error:
            count_api_request(endpoint, None, started=started)
            if _never_connected(error):
                raise ApiUnreachable(f"{method} {path}: could not connect") from None
            raise ApiUnavailable(f"{method} {path}: {type(error).__name__}") from None
        except requests.RequestException as error:
            count_api_request(endpoint, None, started=started)
            raise ApiUnavailable(f"{method} {path}: {type(error).__name__}") from None
        count_api_request(endpoint, response.status_code, started=started)
        if response.status_code == 429:
            API_RATE_LIMITED.inc()
        if not 200 <= response.status_code < 300:
            raise error_for_http(response.status_code, response.text, response.headers)
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise ApiUnavailable(
                f"{method} {path}: HTTP {response.status_code} with a body that is not JSON",
                http_status=response.status_code,
            ) from None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            assert self._settings.key is not None
            # The environment's proxy settings (HTTPS_PROXY, NO_PROXY) are read once here for
            # the one host this client talks to; left to requests they are re-read from
            # os.environ (and ~/.netrc) on every request, a measurable share of a poll's CPU.
            session.proxies.update(get_environ_proxies(self._base_url))
            session.trust_env = False
            session.headers.update(
                {
                    "Authorization": f"Bearer {self._settings.key.get_secret_value()}",
                    "User-Agent": self._settings.user_agent,
                    "Accept": "application/json",
                }
            )
            self._local.session = session
        return session


def _never_connected(error: requests.ConnectionError) -> bool:
    """True when no connection was made at all (refused, or the name did not resolve): the
    request never left, so it cannot have reached the API. A connection that was made and then
    dropped is another matter: the API may have acted on what it got."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)
