"""The poller: polls and submits taken from their schedules in Redis, without a Celery message
each.

With `polling.mode = "poller"` every worker runs one: a thread that, every `poller_tick_s` (or
as soon as threads free up, while polls wait), claims the polls that are due (an atomic claim:
no two pollers take the same one; a claim is a lease, so a poller that dies only delays its
polls) and runs them on a thread pool. Each poll is the same step as the poll task's,
compare-and-set and all, and the step itself files the job's next poll in the schedule.
Celery's per-message cost (publish, hold the countdown, deliver, ack), most of a poll's CPU in
the countdown design, is not paid per poll. Submits come the same way, from a schedule per
lane (`domain.submit_schedule`) that the creating write, put-offs, retries and the sweeper
fill, with the room the due polls leave; the submit step's own lease and request window keep
one submit per job.

The API's answer is not waited for on a thread: with `poller_event_loop` on, the claiming
thread starts each poll (`steps.poll.start_poll`: the request gate), the API client's event
loop sends its GET, and a pool thread ends it with the answer (`end_poll`: the checked write,
the next poll). A thread costs far more memory than a GET in flight on the loop.

How many polls run at once is measured, not fixed: it starts at `poller_threads` and is
resized every `poller_sizing_s` by `poller_sizing.next_sizing`, up to `poller_max_threads`,
from the process's CPU use, whether due polls waited, and whether its last growth paid. A
poll that finishes a job hands its follow-ups to the `Notifier`, so its thread goes back to
polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from imageq.worker.domain.submit_schedule import keeps_claim, split_submits
from imageq.worker.logs import unbind
from imageq.worker.memory_release import release_free_memory
from imageq.worker.messages import Actions, PollFacts, SchedulePoll
from imageq.worker.policy.leases import lease_s
from imageq.worker.poller_notifier import Notifier
from imageq.worker.poller_pool import ElasticPool
from imageq.worker.poller_sizing import PoolLimits, Sizing, Window, next_sizing
from imageq.worker.runtime import Runtime
from imageq.worker.steps.poll import PollStarted, end_poll, poll, start_poll
from imageq.worker.steps.submit import submit
from imageq.worker.store.work_index import ClaimedPoll, ClaimedSubmit
from imageq.worker.upstream.client import TaskReply

log = logging.getLogger(__name__)

Publish = Callable[[Actions], None]
Clock = Callable[[], float]


class Poller:
    """Start with `start()`, stop with `stop()`; `tick()` is one claim-and-dispatch round.

    `send_now` carries out a finished job's follow-ups (notifications in this process);
    `send_later` sends them all as task messages, for when the notifier is full.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        send_now: Publish,
        send_later: Publish,
        cpu_clock: Clock = time.process_time,
        wall_clock: Clock = time.monotonic,
    ) -> None:
        self._rt = rt
        timing = rt.settings.polling
        self._limits = PoolLimits(
            least=timing.poller_threads,
            most=timing.poller_max_threads,
            cpu_target=timing.poller_cpu_target,
        )
        self._tick_s = timing.poller_tick_s
        self._sizing_s = timing.poller_sizing_s
        self._release_memory = timing.poller_release_memory
        # A poll longer than this is taken again by another poller; its token keeps the copy
        # from moving the job twice.
        self._lease_s = lease_s(rt.settings, "poll")
        # A claimed submit comes back after this; the submit's own lease and request window
        # (`steps.submit`) keep a second attempt from sending it twice.
        self._submit_lease_s = lease_s(rt.settings, "submit")
        # Threads start only as polls need them, so the ceiling costs nothing until it is used,
        # and those idle for `poller_idle_s` exit, so a past burst costs nothing either.
        self._pool = ElasticPool(
            timing.poller_max_threads, idle_s=timing.poller_idle_s, name="imageq-poll"
        )
        # With the event loop, the answers to polls are handled here: a millisecond's work
        # each, so a few threads keep up, however many GETs are in flight or answered at once.
        self._answers = ElasticPool(
            timing.poller_loop_threads, idle_s=timing.poller_idle_s, name="imageq-answer"
        )
        self._notifier = Notifier(
            timing.poller_notify_threads,
            send_now=send_now,
            send_later=send_later,
            idle_s=timing.poller_idle_s,
        )
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._changed = threading.Condition()
        self._sizing = Sizing.start(self._limits)
        self._size = self._sizing.size
        self._running = 0  # polls claimed and not yet done
        self._polls_done = 0
        self._filled = False  # the last claim took all its room (or had none)
        self._claims = self._full_claims = self._peak_running = 0
        self._window_cpu_s = cpu_clock()
        self._window_at = wall_clock()
        self._use_loop = timing.poller_event_loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imageq-poller", daemon=True)

    @property
    def size(self) -> int:
        """How many polls it runs at once now."""
        return self._size

    @property
    def threads(self) -> int:
        """Poll threads alive now (running a poll, a submit or a poll's answer, or idle for less
        than `poller_idle_s`)."""
        return self._pool.threads + self._answers.threads

    def start(self) -> None:
        # False where the client's reads do not go through libcurl: polls then hold a thread.
        self._use_loop = self._use_loop and self._rt.client.start_loop()
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout_s)
        if self._use_loop:
            self._rt.client.stop_loop()  # GETs in flight are dropped: their claims lapse
        self._pool.shutdown(wait=True, cancel_waiting=True)
        self._answers.shutdown(wait=True, cancel_waiting=True)
        self._notifier.stop()

    def tick(self) -> int:
        """Claim as many due polls as there is room for, then due submits with the room they
        leave (a job in flight is polled on time before another is taken on, as the request
        budget lets polls go first); hand them to the pool; how many."""
        with self._changed:
            room = self._size - self._running
            self._filled = room <= 0
            if self._filled:
                return 0
            self._running += room  # held for this claim; what it does not take is given back
        polls: list[ClaimedPoll] = []
        submits: list[ClaimedSubmit] = []
        try:
            polls, submits = self._rt.store.claim_due(
                now=self._rt.clock(),
                limit=room,
                poll_lease_s=self._lease_s,
                submit_lease_s=self._submit_lease_s,
            )
        finally:
            taken = len(polls) + len(submits)
            self._release(room - taken)
            for job_id, token, facts in polls:
                if self._use_loop:
                    self._start_poll(job_id, token, facts)
                else:
                    self._pool.submit(self._poll_one, job_id, token, facts)
            if self._use_loop:
                unbind()  # the claiming thread's own lines name no job
            for claimed in submits:
                self._pool.submit(self._submit_one, claimed)
        self._filled = taken == room
        with self._changed:
            self._claims += 1
            self._full_claims += self._filled
            self._peak_running = max(self._peak_running, self._running)
        return taken

    def resize(self) -> int:
        """Close the measuring window: set the size for the next one from it; the new size."""
        now, cpu_s = self._wall_clock(), self._cpu_clock()
        with self._changed:
            window = Window(
                claims=self._claims,
                full_claims=self._full_claims,
                peak_running=self._peak_running,
                polls_done=self._polls_done,
                cpu_s=cpu_s - self._window_cpu_s,
                wall_s=now - self._window_at,
            )
            self._sizing = next_sizing(self._sizing, window, self._limits)
            was, self._size = self._size, self._sizing.size
            self._claims = self._full_claims = self._polls_done = 0
            self._peak_running = self._running
            self._window_cpu_s, self._window_at = cpu_s, now
        if self._size != was:
            log.info(
                "poller runs up to %d polls at once (was %d): %.2f cores used, %.0f polls/s,"
                " %d of %d claims took all their room",
                self._size,
                was,
                window.cpu_share,
                window.poll_rate,
                window.full_claims,
                window.claims,
            )
        if self._release_memory:
            release_free_memory()
        return self._size

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                filled = self._filled
            except Exception:  # Redis away: try again next tick
                log.warning("poller could not claim polls", exc_info=True)
                filled = False
            if filled:  # more may be due: claim again as soon as an eighth of the room is free
                with self._changed:
                    self._changed.wait_for(self._room_or_stop, self._tick_s)
            else:
                self._stop.wait(self._tick_s)
            if self._wall_clock() - self._window_at >= self._sizing_s:
                self.resize()

    def _room_or_stop(self) -> bool:
        return self._stop.is_set() or 8 * (self._size - self._running) >= self._size

    def _release(self, count: int, *, polled: bool = False) -> None:
        if count:
            with self._changed:
                self._running -= count
                self._polls_done += polled
                if self._room_or_stop():  # wake the claimer only when it would claim
                    self._changed.notify()

    def _submit_one(self, claimed: ClaimedSubmit) -> None:
        try:
            submits, rest = split_submits(submit(self._rt, claimed.job_id))
            # A submit put off or retried goes back in the schedule, replacing the claim;
            # without one the claim is given up.
            self._rt.store.schedule_submits(submits, now=self._rt.clock())
            if not keeps_claim(submits, claimed.job_id):
                self._rt.store.release_submit(claimed)
            self._notifier.hand_over([a for a in rest if not isinstance(a, SchedulePoll)])
        except Exception:
            log.exception(
                "submit of job %s failed; it is taken again when its claim lapses", claimed.job_id
            )
        finally:
            self._release(1, polled=True)

    def _start_poll(self, job_id: str, token: int, facts: PollFacts | None) -> None:
        """On the claiming thread: a poll up to its GET, which the client's loop sends."""
        sent = False
        try:
            started = start_poll(self._rt, job_id, token, facts, check_token=False)
            if not isinstance(started, PollStarted):  # put off by the gate
                self._notifier.hand_over(_not_polls(started))
                return
            task_id = started.facts.remote_task_id
            sent = self._rt.client.get_task_later(
                task_id, lambda reply: self._answers.submit(self._end_poll, started, reply)
            )
            if not sent:  # the API wants the POST query: on a thread, as without the loop
                self._pool.submit(self._end_poll, started, None)
                sent = True
        except Exception:
            log.exception("poll of job %s failed; it is polled again when its claim lapses", job_id)
        finally:
            if not sent:
                self._release(1, polled=True)

    def _end_poll(self, started: PollStarted, reply: TaskReply | None) -> None:
        """On a pool thread: the poll's second half, with what its GET got (`reply`), or with
        the request made here, where the loop could not send it."""
        client = self._rt.client
        if reply is None:
            ask = partial(client.get_task, started.facts.remote_task_id)
        else:
            ask = partial(client.task_from, reply)
        try:
            actions = end_poll(self._rt, started, ask)
            self._notifier.hand_over(_not_polls(actions))
        except Exception:
            log.exception(
                "poll of job %s failed; it is polled again when its claim lapses", started.job_id
            )
        finally:
            self._release(1, polled=True)

    def _poll_one(self, job_id: str, token: int, facts: PollFacts | None) -> None:
        try:
            # The claim read the token and the facts in one step with taking the lease, so the
            # poll asks the API without reading the record; its write checks the token again.
            actions = poll(self._rt, job_id, token, facts, check_token=False)
            self._notifier.hand_over(_not_polls(actions))
        except Exception:
            log.exception("poll of job %s failed; it is polled again when its claim lapses", job_id)
        finally:
            self._release(1, polled=True)


def _not_polls(actions: Actions) -> Actions:
    """A poll's follow-ups but its next poll, which the step has filed in the schedule."""
    return [action for action in actions if not isinstance(action, SchedulePoll)]
