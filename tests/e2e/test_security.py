"""Security end to end: pickle refused by the worker, Redis AUTH and TLS, secrets kept out of
logs, Redis and every repr.

The worker and Redis servers are real; each extra Redis here is started with its own options
(a password, TLS) on a free port and stopped by its fixture.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from kombu.connection import Connection
from pydantic import SecretStr

from imageq.config import Settings
from imageq.devenv.redis_server import find_redis_server, free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorServer
from imageq.worker.broker import TRANSPORT
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.params import GenerationParams
from imageq.worker.domain.status import JobStatus
from imageq.worker.errors import ApiError, AuthenticationFailed
from imageq.worker.messages import SUBMIT_TASK
from imageq.worker.upstream.client import ApiClient
from tests.conftest import API_KEY, DEADLINE_S, WEBHOOK_SECRET, wait_for
from tests.unit.test_security_config import Canary

WAIT_S = DEADLINE_S + 10
REDIS_PASSWORD = "redis-pw-5e1d8c3a-never-log-me"
WEBHOOK_KEY_B64 = WEBHOOK_SECRET.removeprefix("whsec_")
SECRETS = {
    "API key": API_KEY.encode(),
    "webhook secret": WEBHOOK_SECRET.encode(),
    "webhook secret, base64": WEBHOOK_KEY_B64.encode(),
    "webhook secret, raw": base64.b64decode(WEBHOOK_KEY_B64),
}


# -- helpers ----------------------------------------------------------------------------------


def stored_values(client: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """(key, bytes) for every value in the database, read by type and also DUMPed.

    DUMP alone is not enough (Redis LZF-compresses strings over 20 bytes in it), nor is the
    plain value: kombu base64-encodes message bodies, so those are decoded as well.
    """
    readers: dict[bytes, Callable[[bytes], object]] = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1),
        b"stream": client.xrange,
    }
    for key in cast(Iterator[bytes], client.scan_iter()):
        dumped = client.dump(key)
        if dumped is None:  # the key went between SCAN and DUMP (a worker deleted it): no value
            continue
        yield key, dumped
        read = readers.get(cast(bytes, client.type(key)))
        for value in flatten(read(key) if read else None):
            yield key, value
            yield from ((key, body) for body in message_bodies(value))


def flatten(reply: object) -> Iterator[bytes]:
    """Every bytes or str inside a Redis reply, however nested."""
    if isinstance(reply, bytes):
        yield reply
    elif isinstance(reply, str):
        yield reply.encode()
    elif isinstance(reply, dict):
        for pair in reply.items():
            yield from flatten(pair)
    elif isinstance(reply, list | tuple | set):
        for item in reply:
            yield from flatten(item)


def message_bodies(value: bytes) -> Iterator[bytes]:
    """The decoded bodies of any kombu messages inside a JSON value (queued or unacked)."""
    try:
        document = json.loads(value)
    except ValueError:
        return
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("properties", {}).get("body_encoding") == "base64":
                yield base64.b64decode(item.get("body", ""))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def leaks(text: bytes, secrets: dict[str, bytes]) -> list[str]:
    return [name for name, secret in secrets.items() if secret in text]


@dataclass
class ExtraRedis:
    """A redis-server of this module's own, with options RedisServer has no say over."""

    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_redis(data_dir: Path, port: int, *options: str, ping: redis.Redis) -> ExtraRedis:
    """Start redis-server on loopback with `options`; return once `ping` gets an answer."""
    command = [
        find_redis_server(),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--loglevel", "warning",
        *options,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = ExtraRedis(process, port)
    give_up = time.monotonic() + 10
    while True:
        try:
            if ping.ping():
                return server
        except redis.ConnectionError:
            pass
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            server.stop()
            raise RuntimeError(f"redis-server exited at start: {error.strip()}")
        if time.monotonic() > give_up:
            server.stop()
            raise RuntimeError("redis-server did not answer within 10 s")
        time.sleep(0.05)


def with_redis(settings_values: dict[str, Any], broker_url: str, store_url: str) -> dict[str, Any]:
    return {**settings_values, "redis": {"broker_url": broker_url, "store_url": store_url}}


def run_one_job(values: dict[str, Any], log_path: Path, name: str) -> tuple[str, WorkerProcess]:
    """Start a worker on these settings, run one job through it to success, stop the worker."""
    settings = Settings(_env_file=None, **values)
    queue = ImageQueue(settings)
    with WorkerProcess(settings_env(values), log_path, name=name) as worker:
        job_id = queue.enqueue("a walled garden", aspect_ratio="3:4", resolution="1K")
        job = queue.wait(job_id, timeout_s=WAIT_S)
    queue._app.close()
    assert job.status is JobStatus.SUCCEEDED
    assert job.outputs
    return job_id, worker


# -- pickle -----------------------------------------------------------------------------------


def protocol2_headers(task: str, task_id: str, args: list[Any]) -> dict[str, Any]:
    """The headers Celery 5.6 sends with a task message (task protocol 2)."""
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": "tests.test_security",
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.mark.e2e
def test_pickled_task_message_is_refused_unread(
    worker: WorkerProcess,
    queue: ImageQueue,
    settings: Settings,
    simulator: SimulatorServer,
    broker: redis.Redis,
    tmp_path: Path,
) -> None:
    """A pickled imageq.submit is rejected before deserialization; its JSON twin runs."""
    now = time.time()
    refused, twin = (
        build_job(settings, "a castle", aspect_ratio="1:1", resolution="1K", now=now)
        for _ in range(2)
    )
    # Stored without being published: only the messages below can submit these jobs.
    assert queue._store.create(refused)
    assert queue._store.create(twin)
    canary = tmp_path / "unpickled"
    submit_queue = settings.worker.submit_queue
    pickled_id, twin_id = str(uuid.uuid4()), str(uuid.uuid4())
    # kombu's Connection carries no annotations.
    with Connection(settings.redis.broker_url) as connection:  # type: ignore[no-untyped-call]
        producer = connection.Producer()
        for task_id, job_id, body, serializer in (
            (pickled_id, refused.job_id, {**EMBED, "canary": Canary(canary)}, "pickle"),
            (twin_id, twin.job_id, EMBED, "json"),
        ):
            producer.publish(
                ([job_id], {}, body),
                exchange="",  # the anonymous exchange: straight onto the queue's list
                routing_key=submit_queue,
                serializer=serializer,
                headers=protocol2_headers(SUBMIT_TASK, task_id, [job_id]),
                correlation_id=task_id,
            )

    assert queue.wait(twin.job_id, timeout_s=WAIT_S).status is JobStatus.SUCCEEDED
    # Celery's on_invalid_task: "Received invalid task message: Refusing to deserialize
    # untrusted content of type pickle (application/x-python-serialize)", then the message
    # is rejected without requeue, and its body dumped (as bytes, so the job id shows).
    refusal = "Refusing to deserialize untrusted content of type pickle"
    wait_for(lambda: refusal in worker.log(), timeout_s=10, what="the refusal")
    log = worker.log()
    assert refused.job_id in log.split(refusal, 1)[1][:3000]  # the dumped body is ours
    assert pickled_id not in log  # no "Task imageq.submit[<id>] received" for it
    assert not canary.exists()
    job = queue.get(refused.job_id)
    assert job.status is JobStatus.QUEUED
    assert job.submit_attempts == 0
    assert refused.job_id not in simulator.stats()["submits_by_out_task_id"]
    # Rejected, not requeued: the message is gone, neither queued nor held unacked.
    wait_for(
        lambda: not any(pickled_id.encode() in value for _, value in stored_values(broker)),
        timeout_s=5,
        what="the refused message to leave the broker",
    )
    queue.cancel(refused.job_id)


# -- Redis AUTH -------------------------------------------------------------------------------


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[ExtraRedis]:
    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD)
    server = start_redis(
        tmp_path, port, "--port", str(port), "--requirepass", REDIS_PASSWORD, ping=client
    )
    client.close()
    yield server
    server.stop()


@pytest.mark.e2e
def test_redis_auth_end_to_end(
    password_redis: ExtraRedis,
    settings_values: dict[str, Any],
    simulator: SimulatorServer,
    tmp_path: Path,
) -> None:
    """With a password on Redis a job runs through; the password is in no log and no value."""
    base = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{password_redis.port}"
    with (
        pytest.raises(redis.AuthenticationError),  # the password is really required
        redis.Redis(host="127.0.0.1", port=password_redis.port) as anonymous,
    ):
        anonymous.ping()

    values = with_redis(settings_values, f"{base}/0", f"{base}/1")
    job_id, worker = run_one_job(values, tmp_path / "worker.log", "imageq-auth")

    log = worker.log()
    # Celery's banner names the broker, masked; a worker's scheme is imageq's Redis transport
    assert f"{TRANSPORT}://:**@127.0.0.1" in log
    assert REDIS_PASSWORD not in log
    assert API_KEY not in log
    for db in (0, 1):
        with redis.Redis.from_url(f"{base}/{db}") as client:
            assert client.dbsize() > 0
            for key, value in stored_values(client):
                assert REDIS_PASSWORD.encode() not in value, key
    assert job_id in simulator.stats()["submits_by_out_task_id"]


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[ExtraRedis, Path]]:
    """A Redis speaking TLS only (and wanting a password), with a throwaway CA; skipped where
    there is no openssl or the redis-server was built without TLS."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate with")
    ca, key, cert = tmp_path / "ca.crt", tmp_path / "server.key", tmp_path / "server.crt"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", "ca.key", "-out", str(ca), "-subj", "/CN=imageq test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", str(cert))  # fmt: skip
    port = free_port()
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=REDIS_PASSWORD,
        ssl=True,
        ssl_ca_certs=str(ca),
        ssl_cert_reqs="required",
    )
    try:
        server = start_redis(
            tmp_path,
            port,
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
            "--requirepass", REDIS_PASSWORD,
            ping=client,
        )  # fmt: skip
    except RuntimeError as error:
        if "tls" in str(error).lower():
            pytest.skip(f"redis-server without TLS: {error}")
        raise
    finally:
        client.close()
    yield server, ca
    server.stop()


@pytest.mark.e2e
def test_redis_tls_end_to_end(
    tls_redis: tuple[ExtraRedis, Path],
    settings_values: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Broker and store over TLS with a verified certificate: a job runs through."""
    server, ca = tls_redis
    base = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{server.port}"
    options = f"ssl_cert_reqs=required&ssl_ca_certs={ca}"
    # The certificate is really checked: without our CA the handshake fails.
    with (
        pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"),
        redis.Redis.from_url(f"{base}/0?ssl_cert_reqs=required") as untrusting,
    ):
        untrusting.ping()

    values = with_redis(settings_values, f"{base}/0?{options}", f"{base}/1?{options}")
    _, worker = run_one_job(values, tmp_path / "worker.log", "imageq-tls")
    log = worker.log()
    assert f"{TRANSPORT}://:**@127.0.0.1" in log
    assert "defaulting to insecure SSL" not in log
    assert REDIS_PASSWORD not in log


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_secrets_in_no_log_and_no_redis_value(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    broker: redis.Redis,
    store_redis: redis.Redis,
    job_path: Path,
) -> None:
    """After a job with a signed webhook, neither the API key nor the webhook secret (in any
    form) is in the worker's log, a job record, or a broker message."""
    job_id = queue.enqueue(
        "a castle sim:poll503=1",
        aspect_ratio="1:1",
        resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
        metadata={"order": 7},
    )
    assert queue.wait(job_id, timeout_s=WAIT_S).status is JobStatus.SUCCEEDED
    wait_for(lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=5, what="webhook")
    assert receiver.for_path(str(job_path))

    log = worker.log().encode()
    assert f"{job_id}".encode() in log  # the log is really being read
    assert leaks(log, SECRETS) == []
    seen = 0
    for db in (broker, store_redis):
        for key, value in stored_values(db):
            seen += 1
            assert leaks(value, SECRETS) == [], key
    assert seen > 0


def test_reprs_hold_no_secret(settings: Settings, queue: ImageQueue) -> None:
    """Settings, the API client, the queue and the store show no key or secret."""
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(ApiClient(settings.api)),
        str(ApiClient(settings.api)),
        repr(queue),
        str(queue),
        repr(queue._store),
        str(queue._store),
    ]
    for text in shown:
        assert leaks(text.encode(), SECRETS) == [], text


WRONG_KEY = "sk-wrong-0a9b8c7d-never-log-me"


@pytest.mark.e2e
def test_authentication_errors_hold_no_key(settings: Settings, simulator: SimulatorServer) -> None:
    """Every ApiError of a 401 shows neither the key sent nor the real one, however printed."""
    client = ApiClient(settings.api.model_copy(update={"key": SecretStr(WRONG_KEY)}))
    params = GenerationParams(prompt="a castle", aspect_ratio="1:1", resolution="1K")
    calls: list[Callable[[], object]] = [
        lambda: client.submit("iq_auth_probe", params),
        lambda: client.get_task("task_nope"),
        lambda: client.find_by_out_task_id("iq_auth_probe"),
    ]
    errors: list[ApiError] = []
    for call in calls:
        with pytest.raises(AuthenticationFailed) as caught:
            call()
        errors.append(caught.value)
    secrets = {**SECRETS, "wrong key": WRONG_KEY.encode()}
    for error in errors:
        assert error.http_status == 401
        assert not error.retryable
        printed = [
            repr(error),
            str(error),
            json.dumps(error.to_record()),
            "".join(traceback.format_exception(error)),
        ]
        for text in printed:
            assert leaks(text.encode(), secrets) == [], text
