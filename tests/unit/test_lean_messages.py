"""Lean task messages: imageq's own leave out what Celery's worker assumes or never reads, and
keep what it reads; others are Celery's own; a held message's repeated strings are shared;
the poll facts travel as a list, and the old dict is still read."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest
from celery import Celery

from imageq.worker.held_payload import share_strings
from imageq.worker.lean_amqp import LEAN_AMQP, lean_headers
from imageq.worker.messages import PollFacts, shown_arguments

FACTS = PollFacts("task-1", 1_800_000_180.5, 3, 1_800_000_000.25, "high", "2K")


def as_task(name: str, **options: Any) -> Any:
    app = Celery("lean-test", set_as_current=False, amqp=LEAN_AMQP)
    return app.amqp.as_task_v2("id-1", name, args=["j1", 4], reply_to="reply-here", **options)


def test_own_task_messages_carry_only_what_the_worker_reads() -> None:
    """A poll with a countdown: the task, its id, its due time and the shown arguments."""
    message = as_task("imageq.poll", countdown=5, argsrepr="['j1', 4]", kwargsrepr="{}")
    assert set(message.headers) == {"task", "id", "eta", "argsrepr", "kwargsrepr"}
    assert "reply_to" not in message.properties
    assert message.properties["correlation_id"] == "id-1"
    assert message.body == (["j1", 4], {}, {})


def test_own_task_messages_keep_headers_off_their_defaults() -> None:
    """A retried task keeps its count (a poll reads it), and a time limit stays."""
    message = as_task("imageq.poll", retries=2, time_limit=30, group_id="g1")
    assert message.headers["retries"] == 2
    assert message.headers["timelimit"] == [30, None]
    assert message.headers["group"] == "g1"


def test_other_tasks_keep_celerys_whole_message() -> None:
    """A user's callback goes to a worker imageq does not configure: Celery's message."""
    message = as_task("app.on_image")
    assert {"origin", "root_id", "ignore_result", "lang", "stamps"} <= set(message.headers)
    assert message.properties["reply_to"] == "reply-here"
    assert message.body[2] == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.mark.parametrize(
    ("header", "value", "kept"),
    [
        ("retries", 0, False),
        ("retries", 1, True),
        ("ignore_result", False, False),
        ("ignore_result", True, True),
        ("origin", "gen1@host", False),
        ("parent_id", "p1", False),
        ("eta", None, False),
        ("eta", "2026-01-01T00:00:00+00:00", True),
        ("stamps", {}, False),
        ("stamps", {"a": 1}, True),
    ],
)
def test_lean_headers(header: str, value: Any, kept: bool) -> None:
    """Each header left out at its default or always unread, kept otherwise."""
    assert (header in lean_headers({"task": "t", "id": "i", header: value})) is kept


def test_shared_strings_are_one_object_for_all_messages() -> None:
    """Two messages decoded apart share their keys and repeated values, and are unchanged."""
    raw = json.dumps(
        {
            "body": "[]",
            "content-type": "application/json",
            "headers": {"task": "imageq.poll", "id": "x"},
            "properties": {
                "correlation_id": "x",
                "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": "imageq.poll"},
            },
        }
    )
    first, second = json.loads(raw), json.loads(raw)
    assert first["headers"]["task"] is not second["headers"]["task"]
    one, two = share_strings(first), share_strings(second)
    assert one == json.loads(raw)
    assert one["headers"]["task"] is two["headers"]["task"]
    assert one["content-type"] is two["content-type"]
    routing = one["properties"]["delivery_info"]["routing_key"]
    assert routing is two["properties"]["delivery_info"]["routing_key"]
    assert one["properties"]["body_encoding"] is two["properties"]["body_encoding"]
    assert one["properties"]["correlation_id"] is one["headers"]["id"]
    (key,) = (key for key in one["headers"] if key == "task")
    assert key is next(key for key in two["headers"] if key == "task")


@pytest.mark.parametrize("payload", [None, [], "text", {1: "a"}, {"headers": None}])
def test_share_strings_leaves_other_shapes_alone(payload: Any) -> None:
    assert share_strings(payload) == payload


def test_facts_travel_as_a_list_and_old_dicts_are_read() -> None:
    assert FACTS.to_message() == ["task-1", 1_800_000_180.5, 3, 1_800_000_000.25, "high", "2K"]
    assert PollFacts.from_message(FACTS.to_message()) == FACTS
    assert PollFacts.from_message(json.loads(json.dumps(asdict(FACTS)))) == FACTS
    # From before the submit time and the kind were carried: both forms.
    short = PollFacts("task-1", 1_800_000_180.5, 3)
    assert PollFacts.from_message(["task-1", 1_800_000_180.5, 3]) == short
    old = {"remote_task_id": "task-1", "deadline_at": 1_800_000_180.5, "poll_count": 3}
    assert PollFacts.from_message(old) == short


def test_shown_arguments_leave_the_facts_out() -> None:
    assert shown_arguments(["j1", 4, FACTS.to_message()]) == "['j1', 4, ...]"
    assert shown_arguments(["j1", 4]) == repr(["j1", 4])
