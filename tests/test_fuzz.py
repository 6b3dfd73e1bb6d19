"""API fuzzing with schemathesis against the service's own OpenAPI schema.

A real `telaten serve` (a subprocess on a fresh database of the suite's kind, with a fake
LLM, so the SSE operations are live: `POST /chat/stream` streams its events,
`POST /milestones/generate` mostly answers its declared 409 since the roadmap the profile
started is active) is fuzzed over every operation in
`/api/v1/openapi.json` (the web client's API under `/client/v1` included), authenticated
as a normal user who has a business profile. Every
response must pass:

- `not_a_server_error`: no 5xx, whatever the input;
- `status_code_conformance`: the status code is declared for the operation;
- `content_type_conformance`: the content type is the declared one;
- `response_schema_conformance`: the body matches the declared response model;
- `response_headers_conformance`: declared response headers are present and valid.

All of schemathesis' phases run: the schema's examples, coverage (boundary values,
missing, wrong-typed and unexpected parameters and methods), fuzzing (Hypothesis, valid
and invalid input) and stateful sequences (create -> read -> update -> delete, following
links it infers). Known ids (categories, a transaction, a milestone and its tasks, a chat
session) are offered to the generator half of the time, so the operations on one resource
reach their happy path too, not only 404.

Bounded for CI (about 3,300 requests, 30-35 s on 2 cores): at most 25 generated cases per
operation in the fuzzing phase (the coverage phase's deterministic cases come on top) and
a fixed seed, so a failure reproduces with the same command. Longer runs (500: about
23,000 requests, 4 minutes):

    TELATEN_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/test_fuzz.py -q
    TELATEN_FUZZ_EXAMPLES=200 TELATEN_FUZZ_SEED=random .venv/bin/pytest tests/test_fuzz.py

(`TELATEN_FUZZ_SEED`: an integer, or `random` for a new seed each run; the seed used is
printed in the report.) A failure prints schemathesis' report: the check that failed,
the response, and a curl command that reproduces it.

Why the command-line runner in a subprocess and not `schema.parametrize()`: the pytest
integration of schemathesis 4.32 uses a pytest-internal attribute that pytest 9.2 no
longer has (`Function._nodeid`), and the CLI runs all four phases, which that
integration does not (no stateful phase).

What the fuzzer cannot break: the test's own credentials. It gets the access token only;
logout, refresh and password change act on a refresh token or the current password,
which it never has. Admin operations answer this normal user 403, which they declare; a
second, shorter pass then fuzzes the admin operations of both APIs as the first admin (their
404s and 409s are only reachable by an admin). `/mcp` is not in the OpenAPI schema
(tests/test_mcp_server.py covers it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.fakes.llm_server import FakeLLMServer
from tests.helpers.accounts import API, DEFAULT_PASSWORD, bearer, unique_email
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env, served_env
from tests.helpers.sse import parse_sse

# Fuzzing the whole API: minutes of generated requests.
pytestmark = pytest.mark.slow

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
DEFAULT_EXAMPLES = 25
EXAMPLES = int(os.environ.get("TELATEN_FUZZ_EXAMPLES", "") or DEFAULT_EXAMPLES)
SEED = os.environ.get("TELATEN_FUZZ_SEED", "") or "20250917"
# The admin operations of the native API and of the web client's (CLIENT_API_PREFIX).
ADMIN_PREFIXES = (f"{API}/admin/", "/client/v1/admin/")
# How often a known id is used where the schema asks for one (else a generated value).
KNOWN_ID_PROBABILITY = 0.5


@pytest.fixture(scope="module")
def fuzz_llm() -> Iterator[FakeLLMServer]:
    """A fake LLM of the fuzz run's own: the roadmap worker may still call it after the
    run, and must not take replies another test scripted."""
    with FakeLLMServer.running() as server:
        yield server


@dataclass
class FuzzTarget:
    server: ServerProcess
    # Logged in before any fuzzing: the fuzzer's failed logins soon throttle 127.0.0.1.
    admin_token: str


@pytest.fixture(scope="module")
async def fuzz_target(
    tmp_path_factory: pytest.TempPathFactory, fuzz_llm: FakeLLMServer
) -> AsyncIterator[FuzzTarget]:
    workdir = tmp_path_factory.mktemp("fuzz")
    async with fresh_database_url(workdir, "fuzz") as url:
        env = served_env(
            url,
            workdir,
            fuzz_llm.base_url,
            FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
            # Tokens that outlast a long run (TELATEN_FUZZ_EXAMPLES=500 and more).
            ACCESS_TOKEN_EXPIRE_MINUTES=str(24 * 60),
        )
        server = ServerProcess(env, workdir)
        try:
            server.wait_ready(timeout=60)
            yield FuzzTarget(server, admin_login(server.base_url))
        finally:
            server.stop()


def admin_login(base_url: str) -> str:
    r = httpx.post(
        f"{base_url}{API}/auth/login",
        json={"email": "admin@telaten.com", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def owner_with_data(base_url: str) -> tuple[str, dict[str, list[str]]]:
    """A normal user with a business and one of everything; their access token and the
    ids of what they can see, by kind."""
    with httpx.Client(base_url=f"{base_url}{API}", timeout=30) as client:
        email = unique_email("fuzz")
        r = client.post(
            "/auth/register",
            json={"email": email, "name": "Bu Fuzz", "password": DEFAULT_PASSWORD},
        )
        assert r.status_code == 201, r.text
        r = client.post("/auth/login", json={"email": email, "password": DEFAULT_PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        client.headers.update(bearer(token))
        client.cookies.clear()

        r = client.post("/business", json={"name": "Warung Fuzz", "category": "Kuliner"})
        assert r.status_code == 201, r.text
        for kind, name in (("income", "Katering"), ("expense", "Gas")):
            r = client.post("/finance/categories", json={"type": kind, "name": name})
            assert r.status_code == 201, r.text
        categories = client.get("/finance/categories").json()
        own = next(c for c in categories if not c["is_default"])
        r = client.post(
            "/finance/transactions",
            json={"type": own["type"], "amount": 150_000, "category_id": own["id"]},
        )
        assert r.status_code == 201, r.text
        transaction = r.json()["id"]
        r = client.post(
            "/milestones",
            json={"title": "Foto menu", "tasks": ["Sewa kamera", "Foto 10 menu"]},
        )
        assert r.status_code == 201, r.text
        milestone = r.json()
        with client.stream("POST", "/chat/stream", json={"content": "Halo"}) as stream:
            assert stream.status_code == 200
            events = parse_sse("".join(stream.iter_text()))
        session = events[0][1]["session_id"]
    return token, {
        "category_ids": [c["id"] for c in categories],
        "transaction_ids": [transaction],
        "milestone_ids": [milestone["id"]],
        "task_ids": [t["id"] for t in milestone["tasks"]],
        "session_ids": [session],
    }


OWNER_ID_BINDINGS = {
    "category_ids": ("path.category_id", "query.category_id", "body.category_id"),
    "transaction_ids": ("path.transaction_id",),
    "milestone_ids": ("path.milestone_id",),
    "task_ids": ("path.task_id",),
    "session_ids": ("path.session_id", "body.session_id"),
}
ADMIN_ID_BINDINGS = {
    "user_ids": ("path.user_id",),
    "level_ids": ("path.level_id",),
    "achievement_ids": ("path.achievement_id",),
}


def admin_known_ids(base_url: str, token: str) -> dict[str, list[str]]:
    """The ids of users, levels and achievements."""
    with httpx.Client(base_url=f"{base_url}{API}", headers=bearer(token), timeout=30) as client:
        users = client.get("/admin/users", params={"limit": 100}).json()["items"]
        levels = client.get("/admin/levels").json()
        achievements = client.get("/admin/achievements").json()
    return {
        "user_ids": [u["id"] for u in users],
        "level_ids": [lv["id"] for lv in levels],
        "achievement_ids": [a["id"] for a in achievements],
    }


def write_config(
    path: Path, known_ids: dict[str, list[str]], bindings: dict[str, tuple[str, ...]]
) -> Path:
    """schemathesis.toml: the known ids as dictionaries, bound to where they go."""
    lines = ["[parameters]"]
    for dictionary, keys in bindings.items():
        for key in keys:
            lines.append(
                f'"{key}" = {{ dictionary = "{dictionary}", probability = {KNOWN_ID_PROBABILITY} }}'
            )
    for dictionary, values in known_ids.items():
        lines += ["", f"[dictionaries.{dictionary}]", f"values = {json.dumps(values)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_schemathesis(server: ServerProcess, token: str, config: Path, *options: str) -> str:
    """`schemathesis run` against the server's schema as the token's owner; its report,
    after asserting that it passed."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{server.base_url}{API}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        *options,
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    run = subprocess.run(
        command,
        cwd=config.parent,  # nothing of the repository's (no stray config, no report files)
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=None if EXAMPLES > DEFAULT_EXAMPLES else 600,
        check=False,
    )
    report = run.stdout + run.stderr
    print(report)  # shown with `-rP`: operations, phases, cases, seed, warnings
    assert run.returncode == 0, report
    return report


def count_operations(server: ServerProcess, prefixes: tuple[str, ...] = ("",)) -> int:
    spec = httpx.get(f"{server.base_url}{API}/openapi.json").json()
    return sum(len(item) for path, item in spec["paths"].items() if path.startswith(prefixes))


def assert_no_unhandled_errors(server: ServerProcess) -> None:
    """Nothing went wrong that a client could not see either: an exception inside a
    stream, after its 200 had been sent, is only in the server's log."""
    logs = server.logs()
    assert "unhandled_exception" not in logs and "Traceback" not in logs, logs[-10000:]


def test_api_conforms_to_its_schema(fuzz_target: FuzzTarget, tmp_path: Path) -> None:
    server = fuzz_target.server
    token, known_ids = owner_with_data(server.base_url)
    config = write_config(tmp_path / "schemathesis.toml", known_ids, OWNER_ID_BINDINGS)
    report = run_schemathesis(server, token, config, "--max-examples", str(EXAMPLES))
    assert f"Tested: {count_operations(server)}\n" in report, report  # every one
    assert_no_unhandled_errors(server)


def test_admin_api_conforms_to_its_schema(fuzz_target: FuzzTarget, tmp_path: Path) -> None:
    """After the owner's pass (an admin may deactivate accounts and rework the ladder)."""
    server, token = fuzz_target.server, fuzz_target.admin_token
    known_ids = admin_known_ids(server.base_url, token)
    config = write_config(tmp_path / "schemathesis.toml", known_ids, ADMIN_ID_BINDINGS)
    report = run_schemathesis(
        server,
        token,
        config,
        "--max-examples",
        str(EXAMPLES),
        "--include-path-regex",
        "^(" + "|".join(ADMIN_PREFIXES) + ")",
    )
    assert f"Tested: {count_operations(server, ADMIN_PREFIXES)}\n" in report, report
    assert_no_unhandled_errors(server)
