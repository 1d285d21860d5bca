"""Schemathesis over every operation of the OpenAPI document a live server (auth off) serves: valid and
invalid inputs alike, the answer is never a 5xx (its ``not_a_server_error`` check).

The server has a database of its own: what the fuzzer registers (webhooks of every namespace, bases,
repositories) must not reach the other tests' servers, whose dispatchers would deliver their events to
the fuzzer's webhooks. Its webhooks cannot target this machine, and with no version in the database
no event ever fires, so nothing is delivered anywhere."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from registry.config import Settings
from registry.db import migrate
from tests.conftest import LiveServer, start_server
from tests.service_checks import fresh_postgres_database

EXAMPLES = 2  # per operation and generation mode (explicit examples too): about 15 s per database on 2 cores
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failing input as it is
    derandomize=True,
    database=None,
)


def _fuzz(server: LiveServer, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @FUZZ
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        if case.path.endswith("/watch"):  # a long poll by design: bound its wait
            case.query = {**(case.query or {}), "timeout": 0}
        response = case.call(base_url=server.url, timeout=30)
        assert response.status_code < 500, f"{case.as_curl_command()}\n{response.text[:1500]}"
        case.validate_response(response, checks=[not_a_server_error])

    run()


@pytest.fixture(params=["sqlite", "postgres"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("fuzz")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            database_url = f"sqlite:///{home / 'lorareg.db'}"
        else:
            database_url = stack.enter_context(fresh_postgres_database("lorareg_fuzz"))
        migrate.upgrade(database_url)
        settings = Settings(home=home, database_url=database_url, webhook_allow_private=False)
        for url in start_server(settings):
            with httpx.Client(base_url=url, timeout=30) as http:
                yield LiveServer(url=url, settings=settings, http=http)


def test_no_input_reaches_a_server_error(fuzzed: LiveServer) -> None:
    server = fuzzed
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not an empty document
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(server, operation, mode)
            except Unsatisfiable:
                pass  # no invalid input exists for it (only unconstrained strings, say)
            except Exception as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    print(f"fuzzed {len(operations)} operations in {time.monotonic() - started:.0f}s")
    assert not failures, "\n\n".join(failures)
