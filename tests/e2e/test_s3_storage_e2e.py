"""Saving outputs to S3-compatible storage end to end: a real worker writes to moto's S3 server
on loopback, each object is checked against the record (size, sha256) and fetched by its URL.

Nothing here reaches AWS: the endpoint is always the loopback moto server, the credentials are
dummies, and the instance-metadata lookup is switched off for the worker and for this process.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from imageq.config import Settings
from imageq.devenv.redis_server import free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Downloads
from imageq.worker.domain.payload import load_schema
from imageq.worker.domain.status import JobStatus
from imageq.worker.outputs.storage import FsspecStorage
from tests.conftest import DEADLINE_S, wait_for

jsonschema = pytest.importorskip("jsonschema")
boto3 = pytest.importorskip("boto3", reason="moto[server] (the dev extra) brings boto3")
moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")

pytestmark = pytest.mark.e2e
BUCKET = "imageq-outputs"
PREFIX = "images"
WAIT_S = DEADLINE_S + 10
DUMMY_CREDENTIALS = {"access_key_id": "testing-key-id", "secret_access_key": "testing-secret"}
# Keep botocore off the network and away from the developer's own AWS configuration.
AWS_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["access_key_id"],
    "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["secret_access_key"],
    "AWS_DEFAULT_REGION": "us-east-1",
}
PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        }
    ],
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with one empty, publicly readable bucket."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in AWS_ENV.items():
            env.setenv(name, value)
        server.start()
        try:
            client = s3_client(endpoint)
            client.create_bucket(Bucket=BUCKET)
            # Like a bucket behind a CDN: anyone may read the outputs, only the worker writes.
            client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(PUBLIC_READ))
            yield endpoint
        finally:
            server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_CREDENTIALS["access_key_id"],
        aws_secret_access_key=DUMMY_CREDENTIALS["secret_access_key"],
    )


@pytest.fixture(scope="module")
def s3_queue(
    s3_endpoint: str, settings_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageQueue]:
    """A worker of its own (own Redis databases) whose storage is s3:// on the moto server."""
    values = copy.deepcopy(settings_values)
    server = values["redis"]["broker_url"].rsplit("/", 1)[0]
    values["redis"] = {"broker_url": f"{server}/13", "store_url": f"{server}/14"}
    values["observability"] = {"metrics_port": 0}
    values["storage"] |= {
        "url": f"s3://{BUCKET}/{PREFIX}",
        "endpoint_url": s3_endpoint,
        "region": "us-east-1",
        "public_url": f"{s3_endpoint}/{BUCKET}/{PREFIX}",
        **DUMMY_CREDENTIALS,
    }
    log = tmp_path_factory.mktemp("s3-worker") / "worker.log"
    env = settings_env(values) | AWS_ENV
    with WorkerProcess(env, log, name="s3"):
        yield ImageQueue(Settings(_env_file=None, **values))
    assert DUMMY_CREDENTIALS["secret_access_key"] not in log.read_text()


def test_outputs_stored_in_s3_verified_and_served_by_url(
    s3_endpoint: str, s3_queue: ImageQueue, receiver: WebhookReceiver
) -> None:
    """Each output is an object in the bucket with the recorded size and sha256; its URL
    serves the same bytes, and the completion payload says where it is."""
    path = "/hooks/s3-storage"
    job_ids = [
        s3_queue.enqueue(
            f"a lighthouse {n}",
            aspect_ratio="16:9",
            resolution="1K",
            webhook_url=f"{receiver.base_url}{path}",
        )
        for n in range(3)
    ]
    for job_id in job_ids:
        assert s3_queue.wait(job_id, timeout_s=WAIT_S).status is JobStatus.SUCCEEDED
    wait_for(
        lambda: all(s3_queue.get(j).downloads_state == Downloads.DONE for j in job_ids),
        timeout_s=WAIT_S,
        what="saves",
    )
    client = s3_client(s3_endpoint)
    for job_id in job_ids:
        saved = s3_queue.get(job_id).outputs[0]["saved"]
        assert saved is not None
        key = saved["location"].removeprefix(f"s3://{BUCKET}/")
        assert key.startswith(f"{PREFIX}/")
        assert key.endswith(f"/{job_id}/0.png")
        stored = client.get_object(Bucket=BUCKET, Key=key)
        data = stored["Body"].read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (saved["bytes"], saved["sha256"])
        assert stored["ContentType"] == "image/png"
        assert saved["url"] == f"{s3_endpoint}/{BUCKET}/{key}"
        served = requests.get(saved["url"], timeout=5)
        assert served.status_code == 200
        assert served.content == data

    hooks = wait_for(
        lambda: len(receiver.for_path(path)) >= len(job_ids) and receiver.for_path(path),
        timeout_s=WAIT_S,
        what="webhooks",
    )
    schema = load_schema()
    by_job = {}
    for hook in hooks:
        payload = json.loads(hook.body)
        jsonschema.validate(payload, schema)
        by_job[payload["job_id"]] = payload["outputs"][0]["saved"]
    for job_id in job_ids:
        assert by_job[job_id] == s3_queue.get(job_id).outputs[0]["saved"]
        assert by_job[job_id]["location"].startswith(f"s3://{BUCKET}/{PREFIX}/")


def test_worker_record_never_holds_the_credentials(s3_queue: ImageQueue) -> None:
    """The job record and the settings' repr keep the S3 secret out."""
    job_id = s3_queue.enqueue("a harbour", aspect_ratio="1:1", resolution="1K")
    wait_for(
        lambda: s3_queue.get(job_id).downloads_state == Downloads.DONE,
        timeout_s=WAIT_S,
        what="save",
    )
    record = json.dumps(s3_queue.get(job_id).outputs)
    assert DUMMY_CREDENTIALS["secret_access_key"] not in record
    assert DUMMY_CREDENTIALS["access_key_id"] not in record


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_upload_to_s3_is_detected_and_removed(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """An upload that reaches the server cut short or altered is refused (OSError, so the
    download is retried) and no object stays under the key."""
    storage = FsspecStorage(
        f"s3://{BUCKET}/damaged",
        endpoint_url=s3_endpoint,
        key=DUMMY_CREDENTIALS["access_key_id"],
        secret=DUMMY_CREDENTIALS["secret_access_key"],
        client_kwargs={"region_name": "us-east-1"},
    )
    filesystem = storage._fs  # the s3fs instance: its writes go through the real server
    real_pipe = filesystem.pipe_file

    def damaged_pipe(path: str, value: bytes, **kwargs: Any) -> Any:
        bad = value[: len(value) // 2] if damage == "truncated" else value[:-1] + b"\x00"
        return real_pipe(path, bad, **kwargs)

    monkeypatch.setattr(filesystem, "pipe_file", damaged_pipe)
    key = f"2026-12-07/{damage}/0.png"
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    with pytest.raises(OSError, match="stored copy"):
        storage.save(key, data, content_type="image/png")
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"damaged/{key}")
    assert listed["KeyCount"] == 0
    monkeypatch.undo()
    location = storage.save(key, data, content_type="image/png")
    assert location == f"s3://{BUCKET}/damaged/{key}"
    stored = s3_client(s3_endpoint).get_object(Bucket=BUCKET, Key=f"damaged/{key}")
    assert stored["Body"].read() == data
