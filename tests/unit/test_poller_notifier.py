"""The poller's notifier: follow-ups leave the poll thread, a full backlog goes out as messages."""

from __future__ import annotations

import logging
import threading

import pytest

from imageq.worker.messages import Actions, ScheduleCallback, ScheduleWebhook
from imageq.worker.poller_notifier import BACKLOG_PER_THREAD, Notifier
from tests.conftest import wait_for

TIMEOUT_S = 5.0


def test_follow_ups_run_on_a_notifier_thread() -> None:
    """Handed over, the follow-ups run on an `imageq-notify` thread, not the caller's."""
    threads: list[str] = []
    later: list[Actions] = []
    notifier = Notifier(
        2,
        send_now=lambda _: threads.append(threading.current_thread().name),
        send_later=later.append,
    )
    notifier.hand_over([ScheduleWebhook("job-1", 1)])
    notifier.stop()  # waits for what was handed over
    assert len(threads) == 1
    assert threads[0].startswith("imageq-notify")
    assert later == []


def test_a_full_backlog_goes_out_as_messages() -> None:
    """With the thread busy and its backlog full, the next follow-ups are sent as messages on
    the caller's thread, at once; everything queued still runs."""
    release = threading.Event()
    ran: list[Actions] = []
    later: list[Actions] = []

    def send_now(actions: Actions) -> None:
        assert release.wait(TIMEOUT_S)
        ran.append(actions)

    notifier = Notifier(1, send_now=send_now, send_later=later.append)
    room = 1 + BACKLOG_PER_THREAD
    for n in range(room):
        notifier.hand_over([ScheduleCallback(f"job-{n}")])
    notifier.hand_over([ScheduleCallback("one-too-many")])
    assert later == [[ScheduleCallback("one-too-many")]]
    release.set()
    notifier.stop()
    assert len(ran) == room


def test_without_threads_the_caller_sends() -> None:
    """`poller_notify_threads = 0`: the follow-ups run on the caller's thread, as before."""
    threads: list[str] = []
    notifier = Notifier(
        0, send_now=lambda _: threads.append(threading.current_thread().name), send_later=print
    )
    notifier.hand_over([ScheduleWebhook("job-1", 1)])
    assert threads == [threading.current_thread().name]
    notifier.stop()


def test_nothing_to_send_takes_no_room() -> None:
    """An empty list (a poll that goes on) is not handed to a thread."""
    calls: list[Actions] = []
    notifier = Notifier(1, send_now=calls.append, send_later=calls.append)
    for _ in range(2 * (1 + BACKLOG_PER_THREAD)):
        notifier.hand_over([])
    notifier.stop()
    assert calls == []


def test_a_failure_is_logged_and_frees_its_room(caplog: pytest.LogCaptureFixture) -> None:
    """A follow-up that raises is logged (the sweeper re-sends it) and gives its room back."""
    room = 1 + BACKLOG_PER_THREAD
    failed = threading.Semaphore(0)

    def fail(_: Actions) -> None:
        failed.release()
        raise ConnectionError("redis went away")

    later: list[Actions] = []
    notifier = Notifier(1, send_now=fail, send_later=later.append)
    with caplog.at_level(logging.ERROR, logger="imageq.worker.poller_notifier"):
        # Twice the room, the second round after the first has failed. (The last failure may
        # still be giving its room back when its send returns: one fewer the second time.)
        for count in (room, room - 1):
            for n in range(count):
                notifier.hand_over([ScheduleCallback(f"job-{n}")])
            for _ in range(count):
                assert failed.acquire(timeout=TIMEOUT_S)
        notifier.stop()
    assert later == []
    assert "the sweeper sends them again" in caplog.text


def test_idle_notifier_threads_exit() -> None:
    """Threads start as follow-ups need them and leave once idle, so a past burst of finished
    jobs holds no threads."""
    started = threading.Barrier(3, timeout=TIMEOUT_S)

    def send_now(_: Actions) -> None:
        started.wait()

    notifier = Notifier(4, send_now=send_now, send_later=print, idle_s=0.05)
    notifier.hand_over([ScheduleCallback("job-1")])
    notifier.hand_over([ScheduleCallback("job-2")])
    started.wait()  # both ran at once, on two threads
    wait_for(lambda: notifier.threads == 0, timeout_s=TIMEOUT_S, what="idle threads gone")
    notifier.stop()
