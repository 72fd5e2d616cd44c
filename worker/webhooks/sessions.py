"""Plain HTTP sessions, one per thread, for calls that must never carry the API key
(webhooks, downloads): requests' sessions are not meant to be shared across threads."""

from __future__ import annotations

import threading

import requests


class ThreadSessions:
    """`get()` returns this thread's session, made on first use."""

    def __init__(self, *, user_agent: str) -> None:
        self._user_agent = user_agent
        self._local = threading.local()

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self._user_agent
            self._local.session = session
        return session
