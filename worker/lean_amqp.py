"""Celery's task messages for imageq's own tasks, without the fields nothing reads.

A worker holds each countdown poll message in memory until it is due: kombu's message with its
payload, the headers, and Celery's request with its own copy of them, each header a key and a
value decoded anew per message (`python -m bench.held_message_memory` shows the parts). So
imageq's own tasks leave out the headers that hold Celery's defaults (Celery's worker reads
each with a default, `celery.app.task.Context`), the publisher's name (`origin`) and the
root and parent task ids (Flower's task tree; imageq follows a job by its id, in the
arguments), the RPC result backend's `reply_to` (imageq keeps no Celery results), and a body's
empty callbacks, errbacks, chain and chord. Every header a worker reads that is not at its
default stays: the task name and id, `eta` (a poll's due time, `stale_polls.py`), `retries`
once retried, and the shown arguments (`argsrepr`, `kwargsrepr`: Flower lists them). Messages
for other tasks (a user's Celery callback) are Celery's own, whole.

`send_task`'s `argsrepr` and `kwargsrepr` go in the headers, where Celery reads them; Celery
would also copy them into the message properties, where nothing does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, Final

from celery.app.amqp import AMQP

OWN_TASKS_PREFIX: Final = "imageq."

DEFAULT_HEADERS: Final[dict[str, Any]] = {
    "lang": "py",
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "ignore_result": False,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
"""Headers left out where they hold this value: what Celery's worker assumes without them."""

UNREAD_HEADERS: Final = frozenset({"origin", "root_id", "parent_id"})
"""Headers left out always: no imageq task reads them."""

EMPTY_EMBED: Final[dict[str, Any]] = {
    "callbacks": None,
    "errbacks": None,
    "chain": None,
    "chord": None,
}


def lean_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers a worker needs: those at Celery's defaults, and the unread, left out."""
    return {
        key: value
        for key, value in headers.items()
        if key not in UNREAD_HEADERS
        and not (key in DEFAULT_HEADERS and value == DEFAULT_HEADERS[key])
    }


class LeanAMQP(AMQP):  # type: ignore[misc]  # celery has no type hints
    """Celery's AMQP, with lean messages for imageq's own tasks (`Celery(amqp=...)`)."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        if not name.startswith(OWN_TASKS_PREFIX):
            return message
        task_args, task_kwargs, embed = message.body
        properties = {key: value for key, value in message.properties.items() if key != "reply_to"}
        return message._replace(
            headers=lean_headers(message.headers),
            properties=properties,
            body=(task_args, task_kwargs, {} if embed == EMPTY_EMBED else embed),
        )

    @cached_property
    def send_task_message(self) -> Callable[..., Any]:
        send = self._create_task_sender()

        def send_without_repr_properties(
            producer: Any, name: str, message: Any, **options: Any
        ) -> Any:
            options.pop("argsrepr", None)
            options.pop("kwargsrepr", None)
            return send(producer, name, message, **options)

        return send_without_repr_properties


LEAN_AMQP: Final = "imageq.worker.lean_amqp:LeanAMQP"
"""Celery's `amqp=` argument that selects it."""
