"""The `imageq` commands in-process (typer's CliRunner) over the memory queue: text from users is
printed as typed, never read as markup; refusals exit 2 without a traceback; a known job id is
"already known"; a different request under it is refused and changes nothing."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner, Result

from imageq.cli.main import app, main
from imageq.config import get_settings
from imageq.ops.top import render, snapshot
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from tests.conftest import WEBHOOK_SECRET
from tests.unit.memory_queue import MemoryStore, SentTasks


class FinishingApp(SentTasks):
    """Stands in for a worker too: a submitted job succeeds at once, so --wait can end."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self.store = store

    def send_task(self, name: str, *, args: Any = (), **options: Any) -> None:
        super().send_task(name, args=args, **options)
        if name == "imageq.submit":
            job = self.store.get(args[0])
            done = {"status": JobStatus.SUCCEEDED, "finished_at": job.created_at + 1}
            self.store.records[job.job_id] |= Job(**{**vars(job), **done}).to_hash()


@dataclass
class Cli:
    """The command line over a memory store; `run` returns click's result."""

    store: MemoryStore
    app: FinishingApp

    def run(self, *args: str) -> Result:
        # Wide, so a table cell never wraps or elides the text under test.
        return CliRunner(env={"COLUMNS": "1000"}).invoke(app, list(args))


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Cli]:
    store = MemoryStore()
    tasks = FinishingApp(store)
    monkeypatch.setattr("imageq.producers.api.connect_store", lambda settings: store)
    monkeypatch.setattr("imageq.producers.api.create_app", lambda settings: tasks)
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's
    for name in [name for name in os.environ if name.startswith("IMAGEQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGEQ_WEBHOOK__SECRETS", WEBHOOK_SECRET)
    get_settings.cache_clear()
    yield Cli(store, tasks)
    get_settings.cache_clear()


def flat(text: str) -> str:
    """Text without whitespace: what is printed, however rich pads or wraps it."""
    return "".join(text.split())


def no_traceback(result: Result) -> None:
    """The command ended by its own exit, not by an exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output


MARKUP = ["a [red] car on a [bold] road", "[/]", "[/x]", "[", "]", "x [link=file:///etc] y",
          "\\[bold] :smile: [@click=quit]", "[bold red]not bold[/bold red]"]  # fmt: skip


# -- printed as typed -------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", MARKUP)
def test_a_prompt_with_markup_is_queued_and_shown_as_typed(cli: Cli, prompt: str) -> None:
    """submit takes it as any prompt; status and submit --wait print it literally."""
    submitted = cli.run("submit", prompt, "-r", "1:1", "-s", "1K", "--job-id", "j1", "--wait")
    no_traceback(submitted)
    assert submitted.exit_code == 0, submitted.output
    assert flat(prompt) in flat(submitted.stdout)
    status = cli.run("status", "j1")
    assert status.exit_code == 0, status.output
    assert flat(prompt) in flat(status.stdout)
    assert cli.store.get("j1").params["prompt"] == prompt


@pytest.mark.parametrize("ratio", ["[/x]", "[/]", "[bold]1:1", "1:1]", "[red]"])
def test_a_ratio_with_markup_is_refused_naming_it(cli: Cli, ratio: str) -> None:
    """Refused as any unknown ratio: exit 2, the value quoted as typed, nothing stored."""
    result = cli.run("submit", "p", "-r", ratio, "-s", "1K")
    no_traceback(result)
    assert result.exit_code == 2
    assert flat(f"aspect_ratio: {ratio!r} is not one of") in flat(result.stderr)
    assert result.stdout == ""
    assert cli.store.records == {}


@pytest.mark.parametrize("command", [["status"], ["cancel"], ["watch"]])
@pytest.mark.parametrize("given", ["[/]", "[bold]x", "x\x1b[31m"])
def test_an_unknown_id_with_markup_is_named_as_typed(
    cli: Cli, command: list[str], given: str
) -> None:
    """No such job or batch: exit 3, the id quoted (control characters escaped), no traceback."""
    result = cli.run(*command, given)
    no_traceback(result)
    assert result.exit_code == 3
    assert flat(f"no job or batch {given!r}") in flat(result.stderr)
    assert "\x1b" not in result.stderr


def test_a_stored_prompt_with_control_characters_is_shown_escaped(cli: Cli) -> None:
    """A record from before prompts were checked: its ESC prints as \\x1b, never raw."""
    params = {"prompt": "x\x1b[2J\x07y", "aspect_ratio": "1:1", "resolution": "1K"}
    cli.store.create(Job(job_id="old", params={**params, "quality": "high"}))
    result = cli.run("status", "old")
    assert result.exit_code == 0, result.output
    assert "x\\x1b[2J\\x07y" in result.stdout
    assert "\x1b" not in result.stdout


@pytest.mark.parametrize("url", ["https://images.example/imageq/s/0.png", None])
def test_status_shows_where_a_saved_output_is_served_when_it_is(cli: Cli, url: str | None) -> None:
    """A saved output's public URL (S3 storage with a public base URL) is shown; none, no line."""
    params = {"prompt": "a castle", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}
    saved = {"location": "s3://bucket/imageq/s/0.png", "bytes": 9, "sha256": "ab", "width": 1,
             "height": 1, "content_type": "image/png", **({"url": url} if url else {})}  # fmt: skip
    output = {"url": "https://api.example/files/0.png", "width": 1, "height": 1, "saved": saved}
    cli.store.create(Job(job_id="s", params=params, outputs=[output]))
    result = cli.run("status", "s")
    assert result.exit_code == 0, result.output
    assert "saved: s3://bucket/imageq/s/0.png" in result.stdout
    assert ("served at: https://images.example/imageq/s/0.png" in result.stdout) is bool(url)
    assert ("served at" in result.stdout) is bool(url)


def test_report_of_an_unknown_batch_with_markup_exits_3(cli: Cli, tmp_path: Path) -> None:
    """report names the batch as typed."""
    result = cli.run("report", "[/]", "--html", str(tmp_path / "r.html"))
    no_traceback(result)
    assert result.exit_code == 3
    assert "no batch '[/]'" in result.stderr


def test_bulk_rows_with_markup_are_reported_and_run_as_typed(cli: Cli, tmp_path: Path) -> None:
    """A row whose ratio is "[/]" is refused by line, printed as typed; a "[bold]" prompt runs."""
    rows = [
        {"prompt": "a [bold] castle [/]", "aspect_ratio": "1:1", "resolution": "1K"},
        {"prompt": "lake", "aspect_ratio": "[/]", "resolution": "1K"},
        {"prompt": "x", "aspect_ratio": "1:1", "resolution": "1K", "quality": "[red]ultra"},
    ]
    path = tmp_path / "rows[bold].jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = cli.run("bulk", str(path), "--batch-id", "b1")
    no_traceback(result)
    assert result.exit_code == 1  # rows were skipped
    assert flat("line 2: aspect_ratio: '[/]' is not one of") in flat(result.stderr)
    assert flat("line 3: quality: '[red]ultra' is not one of") in flat(result.stderr)
    assert cli.store.get("b1-000001").params["prompt"] == "a [bold] castle [/]"
    assert result.stdout.strip() == "b1"
    assert sorted(tmp_path.iterdir()) == [path]  # no manifest until the batch ends
    manifest = tmp_path / "m.jsonl"
    shown_batch = cli.run("batches", "show", "b1", "--manifest", str(manifest))
    assert shown_batch.exit_code == 0, shown_batch.output
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [entry["status"] for entry in entries] == ["succeeded", "invalid", "invalid"]
    assert entries[0]["prompt"] == "a [bold] castle [/]"
    assert "a [bold] castle [/]" in shown_batch.stdout


def test_dead_letter_reasons_with_markup_are_shown_as_typed(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """webhooks dead-letters prints a receiver's reason literally."""

    class Replays:
        def __init__(self, settings: object) -> None:
            pass

        def dead_letters(self) -> dict[str, dict[str, Any]]:
            return {"j[/]": {"at": 0, "attempts": 5, "reason": "HTTP 500: [/] [bold]boom"}}

    monkeypatch.setattr("imageq.cli.dead_letters.WebhookReplays", Replays)
    result = cli.run("webhooks", "dead-letters")
    no_traceback(result)
    assert result.exit_code == 0
    assert "HTTP 500: [/] [bold]boom" in result.stdout
    assert "j[/]" in result.stdout


def test_top_shows_failure_reasons_and_ids_as_typed() -> None:
    """The live view's failures table prints a reason quoting a prompt literally."""
    failed = Job(
        job_id="j1",
        params={"prompt": "p"},
        status=JobStatus.FAILED,
        created_at=1.0,
        finished_at=2.0,
        error={"type": "SafetyRejected", "message": "refused: [/] [bold]x\x1b[2J"},
    )
    shot = snapshot([failed], {}, now=3.0, window_s=60)
    console = Console(record=True, width=1000, file=io.StringIO())
    console.print(render(shot))
    printed = console.export_text()
    assert "refused: [/] [bold]x\\x1b[2J" in printed
    assert "\x1b" not in printed


def test_an_imageq_error_reaching_main_is_printed_as_typed(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt record named "[/]": main prints the error as typed and exits 2."""
    cli.store.records["[/]"] = {"job_id": '"[/]"', "params": "not json"}
    monkeypatch.setattr(sys, "argv", ["imageq", "status", "[/]"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    assert "CorruptRecord: job record '[/]' is corrupt" in capsys.readouterr().err


# -- idempotency keys -------------------------------------------------------------------------


def test_a_known_job_id_with_the_same_request_is_already_known(cli: Cli) -> None:
    """The second submit prints the same id, says "already known", and queues nothing."""
    args = ["submit", "a castle", "-r", "16:9", "-s", "2k", "--job-id", "order-42", "-m", "k=v"]
    first = cli.run(*args, "--json")
    again = cli.run(*args, "--json")
    text = cli.run(*args)
    assert json.loads(first.stdout) == {"job_id": "order-42", "already_known": False}
    assert json.loads(again.stdout) == {"job_id": "order-42", "already_known": True}
    assert (text.exit_code, text.stdout) == (0, "order-42\n")
    assert "order-42 already known" in text.stderr
    assert "already known" not in first.stderr
    assert cli.app.names == ["imageq.submit"]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        (["a lake", "-r", "16:9", "-s", "2K"], "prompt"),
        (["a castle", "-r", "16:9", "-s", "1K", "-q", "low"], "resolution, quality"),
        (["a castle", "-r", "16:9", "-s", "2K", "-p", "seed=8"], "extra_params"),
        (["a castle", "-r", "16:9", "-s", "2K", "-m", "k=w"], "metadata"),
    ],
)
def test_a_known_job_id_with_another_request_is_refused(
    cli: Cli, change: list[str], fields: str
) -> None:
    """Exit 2 naming the differing fields; the record and the queue are unchanged."""
    assert cli.run("submit", "a castle", "-r", "16:9", "-s", "2K", "--job-id", "j1").exit_code == 0
    record = dict(cli.store.records["j1"])
    result = cli.run("submit", *change, "--job-id", "j1", "--json")
    no_traceback(result)
    assert result.exit_code == 2
    assert flat(f"'j1' is already a job with a different {fields};") in flat(result.stderr)
    assert result.stdout == ""
    assert cli.store.records["j1"] == record
    assert cli.app.names == ["imageq.submit"]


def test_a_bulk_row_known_with_another_request_is_a_row_error(cli: Cli, tmp_path: Path) -> None:
    """Resumed with one row changed: that row is refused by line, the rest already known."""
    path = tmp_path / "rows.jsonl"
    rows = [{"prompt": f"castle {n}", "aspect_ratio": "1:1", "resolution": "1K"} for n in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert cli.run("bulk", str(path), "--batch-id", "b1").exit_code == 0
    record = dict(cli.store.records["b1-000002"])
    rows[1]["prompt"] = "a lake"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = cli.run("bulk", str(path), "--batch-id", "b1")
    assert result.exit_code == 1
    assert flat("line 2: job_id: 'b1-000002' is already a job with a different prompt") in flat(
        result.stderr
    )
    assert "0 queued, 2 already known, 1 invalid row(s)" in result.stderr
    # With --json, the same in the one object on stdout, and nothing on stderr.
    as_json = cli.run("bulk", str(path), "--batch-id", "b1", "--json")
    assert as_json.exit_code == 1
    assert as_json.stderr == ""
    summary = json.loads(as_json.stdout)
    assert (summary["queued"], summary["already_known"]) == (0, 3 - 1)
    [refused] = summary["refused"]
    assert refused["line"] == 2
    assert "already a job with a different prompt" in refused["reason"]
    assert cli.store.records["b1-000002"] == record
    assert len(cli.app.sent) == 3


# -- loose input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "named"),
    [("a\x00b", "U+0000 (NUL) at character 2"), ("x\x1b[31m", "U+001B (ESC) at character 2")],
)
def test_a_prompt_with_a_control_character_is_refused(cli: Cli, prompt: str, named: str) -> None:
    """Exit 2 naming the character and its place; nothing stored; the terminal gets no ESC."""
    result = cli.run("submit", prompt, "-r", "1:1", "-s", "1K")
    assert result.exit_code == 2
    assert named in result.stderr
    assert "\x1b" not in result.output
    assert cli.store.records == {}


def test_newlines_and_tabs_in_a_prompt_are_accepted(cli: Cli) -> None:
    """Line breaks and tabs are prompt text."""
    result = cli.run("submit", "two\nlines\tand a tab", "-r", "1:1", "-s", "1K", "--job-id", "j")
    assert result.exit_code == 0, result.output
    assert cli.store.get("j").params["prompt"] == "two\nlines\tand a tab"


@pytest.mark.parametrize("value", ["notjson", "NaN", "1e400", "{", "'x'", ""])
def test_a_param_that_is_not_json_is_refused_naming_it(cli: Cli, value: str) -> None:
    """--param KEY=JSON: a value that is not (strict) JSON exits 2, naming key and value."""
    result = cli.run("submit", "p", "-r", "1:1", "-s", "1K", "--param", f"seed={value}")
    no_traceback(result)
    assert result.exit_code == 2
    assert flat(f"--param seed: {value!r} is not JSON") in flat(result.stderr)
    assert cli.store.records == {}


def test_params_that_are_json_reach_the_job(cli: Cli) -> None:
    """Numbers, quoted text and objects are taken as JSON."""
    args = ["-p", "seed=7", "-p", 'style="[bold]"', "-p", 'o={"a": [1]}', "--job-id", "j"]
    assert cli.run("submit", "p", "-r", "1:1", "-s", "1K", *args).exit_code == 0
    assert cli.store.get("j").params["extra"] == {"seed": 7, "style": "[bold]", "o": {"a": [1]}}


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "j", "--interval", "inf"],
        ["watch", "j", "--interval", "-1"],
        ["submit", "p", "-r", "1:1", "-s", "1K", "--wait", "--timeout", "nan"],
        ["bulk", "missing[/].jsonl"],
        ["top", "--window", "0"],
        ["report", "b", "--html", "x.html", "--thumbnail-px", "0"],
        ["health", "--timeout", "inf"],
    ],
)
def test_option_values_that_cannot_work_are_usage_errors(cli: Cli, args: list[str]) -> None:
    """Refused by the parser (exit 2), before any sleep or division could raise."""
    result = cli.run(*args)
    no_traceback(result)
    assert result.exit_code == 2


# -- properties -------------------------------------------------------------------------------

CLI_RUNS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Markup's pieces, emoji codes, control characters, line breaks and tabs, and plain words.
PIECES = ["[", "]", "/", "[/]", "[bold]", "[red]", "[/bold]", "[link=x]", "[@click=quit]", "\\",
          ":smile:", "=", "#", " ", "\n", "\t", "\r\n", "\x00", "\x1b", "\x07", "\x85", "a",
          "castle", "é", "\u2028"]  # fmt: skip
MARKUP_TEXT = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
# Brackets as parentheses: the same text but for what rich could read as markup.
UNBRACKETED = str.maketrans("[]", "()")


def fresh(cli: Cli) -> Cli:
    """The same command line over an emptied store (one Hypothesis example each)."""
    cli.store.records.clear()
    cli.store.batches.clear()
    cli.store.batch_lines.clear()
    cli.app.sent.clear()
    return cli


def assert_no_raw_control(result: Result) -> None:
    assert not any(char in result.output for char in "\x00\x1b\x07\x85"), result.output


@CLI_RUNS
@given(MARKUP_TEXT)
@example("\t\u2028[bold]")  # a Unicode line separator once cut the status cell short
def test_any_prompt_is_taken_or_refused_as_without_brackets_and_shown_as_typed(
    cli: Cli, prompt: str
) -> None:
    """Brackets change nothing: the same exit code and message as with parentheses; an
    accepted prompt prints as typed (line breaks aside) in status and submit --wait."""
    fresh(cli)
    plain = prompt.translate(UNBRACKETED)
    given_ = cli.run("submit", prompt, "-r", "1:1", "-s", "1K", "--job-id", "j1", "--wait")
    control = cli.run("submit", plain, "-r", "1:1", "-s", "1K", "--job-id", "j2", "--wait")
    for result in (given_, control):
        no_traceback(result)
        assert_no_raw_control(result)
    assert given_.exit_code == control.exit_code
    assert given_.stderr.replace("j1", "j2") == control.stderr
    if given_.exit_code == 0:
        status = cli.run("status", "j1")
        assert flat(prompt) in flat(status.stdout)
        assert flat(prompt) in flat(given_.stdout)
        assert cli.store.get("j1").params["prompt"] == prompt
    else:
        assert given_.exit_code == 2
        assert "j1" not in cli.store.records


@CLI_RUNS
@given(MARKUP_TEXT, st.sampled_from(["-r", "-s", "-q"]))
def test_any_ratio_resolution_or_quality_is_refused_as_without_brackets(
    cli: Cli, value: str, option: str
) -> None:
    """An option's text with brackets is refused like the same text with parentheses, and
    quoted as typed."""
    fresh(cli)
    valid = {"-r": "1:1", "-s": "1K", "-q": "high"}
    given_ = cli.run(
        "submit", "p", *[a for o, v in valid.items() for a in (o, value if o == option else v)]
    )
    plain = value.translate(UNBRACKETED)
    control = cli.run(
        "submit", "p", *[a for o, v in valid.items() for a in (o, plain if o == option else v)]
    )
    for result in (given_, control):
        no_traceback(result)
        assert_no_raw_control(result)
    assert given_.exit_code == control.exit_code
    if given_.exit_code == 2:
        assert flat(repr(value)) in flat(given_.stderr)
        assert cli.store.records == {}


@CLI_RUNS
@given(
    st.lists(
        st.tuples(MARKUP_TEXT, MARKUP_TEXT | st.sampled_from(["1:1", "16:9"])),
        min_size=1,
        max_size=4,
    )
)
def test_any_bulk_rows_are_refused_by_line_as_without_brackets(
    cli: Cli, tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]
) -> None:
    """A bulk file of markup-like prompts and ratios: the same rows refused, with the same
    reasons, as the file with parentheses; every prompt taken is stored as typed."""
    outcomes = []
    path = tmp_path_factory.mktemp("bulk") / "rows.jsonl"
    for translate in (False, True):
        fresh(cli)
        lines = [json.dumps({"prompt": p, "aspect_ratio": r, "resolution": "1K"}) for p, r in rows]
        text = "\n".join(lines) + "\n"
        path.write_text(text.translate(UNBRACKETED) if translate else text)
        result = cli.run("bulk", str(path), "--batch-id", "b1")
        no_traceback(result)
        assert_no_raw_control(result)
        assert result.exit_code in (0, 1, 2)
        outcomes.append((result.exit_code, flat(result.stderr)))
        if not translate:
            for line, job_id in cli.store.batch_jobs("b1").items():
                assert cli.store.get(job_id).params["prompt"] == rows[line - 1][0]
    (code, stderr), (plain_code, plain_stderr) = outcomes
    assert code == plain_code
    assert stderr.translate(UNBRACKETED) == plain_stderr


@CLI_RUNS
@given(
    MARKUP_TEXT.filter(lambda text: not text.startswith("-")),
    st.sampled_from(["status", "cancel", "watch"]),
)
def test_any_unknown_id_is_named_as_typed(cli: Cli, given_id: str, command: str) -> None:
    """status, cancel and watch of any text: exit 3 (no such job or batch), the id quoted."""
    result = cli.run(command, given_id)
    no_traceback(result)
    assert_no_raw_control(result)
    assert result.exit_code == 3
    assert flat(f"no job or batch {given_id!r}") in flat(result.stderr)


@CLI_RUNS
@given(MARKUP_TEXT | st.text(max_size=8))
def test_any_param_value_is_json_or_refused(cli: Cli, value: str) -> None:
    """--param seed=VALUE: stored as its JSON, or refused (exit 2) naming it; never a crash."""
    fresh(cli)
    result = cli.run("submit", "p", "-r", "1:1", "-s", "1K", "--job-id", "j", "-p", f"seed={value}")
    no_traceback(result)
    try:
        expected = json.loads(value, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError):
        assert result.exit_code == 2
        assert flat(f"--param seed: {value!r} is not JSON") in flat(result.stderr)
        assert cli.store.records == {}
        return
    if isinstance(expected, float) and not math.isfinite(expected):
        assert result.exit_code == 2
        return
    assert result.exit_code == 0, result.output
    assert cli.store.get("j").params["extra"] == {"seed": expected}
