"""Plain HTTP sessions, one per thread, for URLs imageq did not choose (webhooks, downloads):
they never carry the API key, and every connection they open is checked against the
`TargetPolicy` (`connecting.CheckedAdapter`). requests' sessions are not meant to be shared
across threads."""

from __future__ import annotations

import threading

import requests

from imageq.worker.webhooks.addresses import TargetPolicy
from imageq.worker.webhooks.connecting import CheckedAdapter


def guarded_session(policy: TargetPolicy, *, user_agent: str) -> requests.Session:
    """A session whose every connection `policy` checks, that reads nothing from the
    environment: no proxy (the target would go unchecked) and no .netrc (a job's URL must not
    collect the machine's credentials)."""
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = user_agent
    adapter = CheckedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ThreadSessions:
    """`get()` returns this thread's guarded session, made on first use."""

    def __init__(self, policy: TargetPolicy, *, user_agent: str) -> None:
        self._policy = policy
        self._user_agent = user_agent
        self._local = threading.local()

    def get(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session(self._policy, user_agent=self._user_agent)
            self._local.session = session
        return session
