"""API keys (a Kelpie extension, README "API keys"): made by `kelpie keys` on a running
server's database or by the admin route, checked on every route but health, revoked,
expired and rate limited; Letta's SDK works with one as its `api_key`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from letta_client import AuthenticationError, Letta, RateLimitError

from kelpie.service import KEYS_RELOAD_S

from ._support import MODEL, KelpieStarter, assert_every_route_refused, unique

ADMIN_ROUTE = "/v1/admin/api-keys"
UNKNOWN_KEY_ID = "apikey-00000000-0000-4000-8000-000000000000"
# A key-shaped secret of no key.
NO_KEY = "kelpie_" + "0" * 32 + "_" + "A" * 43
# How long a change made by the CLI may take to reach a running server, with slack.
PROPAGATION_S = KEYS_RELOAD_S + 3


def kelpie_cli(database: Sequence[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`kelpie keys ...` on the database named by `database` (the launcher's options)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KELPIE_", "LETTA_"))}
    argv = [sys.executable, "-m", "kelpie", "keys", *args, *database]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_status(http: httpx.Client, headers: dict[str, str], status: int) -> float:
    """Seconds until GET /v1/agents answers `status` (failing after PROPAGATION_S)."""
    started = time.monotonic()
    while True:
        response = http.get("/v1/agents", headers=headers)
        if response.status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < PROPAGATION_S, response.text
        time.sleep(0.2)


@dataclasses.dataclass(frozen=True)
class KeysServer:
    url: str
    database: list[str]  # the options of `kelpie keys` for its database
    admin_key: str


@pytest.fixture(scope="module")
def keys_server(kelpie_launcher: KelpieStarter) -> KeysServer:
    """An open server on which `kelpie keys create --admin` (run while it serves) turns key
    authentication on. Failures are allowed generously: tests here send wrong keys."""
    url = kelpie_launcher.start({"KELPIE_AUTH_FAILURES_MAX": "10000"})
    database = kelpie_launcher.database_args(kelpie_launcher.data_dirs[url])
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v1/agents").status_code == 200
        admin_key = kelpie_cli(database, "create", "root", "--admin").stdout.strip()
        wait_for_status(http, {}, 401)
    return KeysServer(url, database, admin_key)


@pytest.fixture
def raw(keys_server: KeysServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keys_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def admin(keys_server: KeysServer) -> Iterator[httpx.Client]:
    headers = bearer(keys_server.admin_key)
    with httpx.Client(base_url=keys_server.url, headers=headers, timeout=30) as client:
        yield client


def create_key(client: httpx.Client, /, **fields: object) -> dict[str, object]:
    response = client.post(ADMIN_ROUTE, json={"name": unique("key"), **fields})
    assert response.status_code == 200, response.text
    created = response.json()
    assert isinstance(created, dict)
    return created


def listed(admin: httpx.Client, key_id: object) -> dict[str, object]:
    response = admin.get(ADMIN_ROUTE)
    assert response.status_code == 200, response.text
    return next(key for key in response.json() if key["id"] == key_id)


class TestAuthWithKeys:
    @pytest.mark.parametrize("path", ["/v1/health", "/v1/health/"])
    def test_health_stays_open(self, raw: httpx.Client, path: str) -> None:
        assert raw.get(path).status_code == 200

    @pytest.mark.parametrize(
        "headers",
        [{}, bearer("wrong"), bearer(NO_KEY), {"X-BARE-PASSWORD": f"password {NO_KEY}"}],
        ids=["none", "not-a-key", "no-such-key", "bare-password"],
    )
    def test_no_or_a_wrong_key_is_401(self, raw: httpx.Client, headers: dict[str, str]) -> None:
        response = raw.get("/v1/agents", headers=headers)

        assert response.status_code == 401
        assert response.json() == {"detail": "Unauthorized"}

    @pytest.mark.parametrize("form", ["bearer", "bare-password"])
    def test_the_admin_key_works_in_either_header(
        self, raw: httpx.Client, keys_server: KeysServer, form: str
    ) -> None:
        key = keys_server.admin_key
        headers = bearer(key) if form == "bearer" else {"X-BARE-PASSWORD": f"password {key}"}

        assert raw.get("/v1/agents", headers=headers).status_code == 200

    def test_every_route_but_health_needs_a_key(
        self, raw: httpx.Client, keys_server: KeysServer
    ) -> None:
        assert_every_route_refused(raw, bearer(keys_server.admin_key))

    def test_the_mcp_endpoint_needs_a_key(self, raw: httpx.Client, keys_server: KeysServer) -> None:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        accept = {"Accept": "application/json, text/event-stream"}

        refused = raw.post("/v1/mcp", json=initialize, headers=accept)
        admitted = raw.post(
            "/v1/mcp", json=initialize, headers={**accept, **bearer(keys_server.admin_key)}
        )

        assert refused.status_code == 401
        assert admitted.status_code != 401, admitted.text


class TestAdminRoute:
    def test_create_use_list_and_revoke(self, admin: httpx.Client, raw: httpx.Client) -> None:
        created = create_key(admin, name="app")
        key = created["key"]
        assert isinstance(key, str)

        assert raw.get("/v1/agents", headers=bearer(key)).status_code == 200
        shown = listed(admin, created["id"])
        assert "key" not in shown
        assert "secret_hash" not in shown
        assert key not in admin.get(ADMIN_ROUTE).text
        assert shown["name"] == "app"
        assert shown["admin"] is False
        assert shown["last_used_at"] is not None
        assert shown["revoked_at"] is None

        revoked = admin.delete(f"{ADMIN_ROUTE}/{created['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        refused = raw.get("/v1/agents", headers=bearer(key))
        assert refused.status_code == 401  # at once: the server made the change
        assert refused.json() == {"detail": f"API key 'app' ({created['id']}) was revoked"}
        assert listed(admin, created["id"])["revoked_at"] == revoked.json()["revoked_at"]

    def test_only_admins_manage_keys(
        self, admin: httpx.Client, raw: httpx.Client, keys_server: KeysServer
    ) -> None:
        plain = create_key(admin, name="plain")
        ops = [("GET", ADMIN_ROUTE, None), ("POST", ADMIN_ROUTE, {"name": "x"})]
        ops.append(("DELETE", f"{ADMIN_ROUTE}/{plain['id']}", None))
        as_admin = create_key(admin, admin=True)

        for method, path, body in ops:
            response = raw.request(method, path, json=body, headers=bearer(str(plain["key"])))
            assert response.status_code == 403, response.text
            assert "may not manage API keys" in response.json()["detail"]
        assert listed(admin, plain["id"])["revoked_at"] is None
        allowed = raw.get(ADMIN_ROUTE, headers=bearer(str(as_admin["key"])))
        assert allowed.status_code == 200

    def test_an_expired_key_is_401_naming_when(
        self, admin: httpx.Client, raw: httpx.Client
    ) -> None:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        created = create_key(admin, name="brief", expires_at=expires_at.isoformat())
        headers = bearer(str(created["key"]))

        assert raw.get("/v1/agents", headers=headers).status_code == 200
        time.sleep(max(0.0, (expires_at - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
        refused = raw.get("/v1/agents", headers=headers)

        assert refused.status_code == 401
        detail = refused.json()["detail"]
        assert detail.startswith(f"API key 'brief' ({created['id']}) expired at ")

    def test_a_key_over_its_rate_limit_is_429_with_retry_after(
        self, admin: httpx.Client, raw: httpx.Client
    ) -> None:
        created = create_key(admin, name="slow", rate_limit_per_minute=2)
        headers = bearer(str(created["key"]))

        statuses = [raw.get("/v1/agents", headers=headers).status_code for _ in range(2)]
        limited = raw.get("/v1/agents", headers=headers)

        assert statuses == [200, 200]
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert "Rate limit exceeded: API key 'slow'" in limited.json()["detail"]
        # Another key, and the admin's, are not slowed by it.
        assert raw.get("/v1/agents", headers=bearer(str(create_key(admin)["key"]))).is_success

    @pytest.mark.parametrize(
        ("body", "status", "detail"),
        [
            ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, 400, "not in the future"),
            ({"name": ""}, 422, "name"),
            ({"name": "a\nb"}, 422, "control characters"),
            ({"name": "x", "rate_limit_per_minute": 0}, 422, "rate_limit_per_minute"),
            ({"name": "x", "expires_at": "soon"}, 422, "expires_at"),
            ({}, 422, "name"),
        ],
        ids=["past", "empty-name", "control-name", "zero-rate", "bad-date", "no-name"],
    )
    def test_bad_input_is_a_4xx_with_a_detail(
        self, admin: httpx.Client, body: dict[str, object], status: int, detail: str
    ) -> None:
        before = len(admin.get(ADMIN_ROUTE).json())

        response = admin.post(ADMIN_ROUTE, json=body)

        assert response.status_code == status, response.text
        assert detail in response.json()["detail"]
        assert len(admin.get(ADMIN_ROUTE).json()) == before

    @pytest.mark.parametrize(
        ("key_id", "status"), [(UNKNOWN_KEY_ID, 404), ("nope", 422), ("apikey-1", 422)]
    )
    def test_revoking_an_unknown_or_malformed_id(
        self, admin: httpx.Client, key_id: str, status: int
    ) -> None:
        response = admin.delete(f"{ADMIN_ROUTE}/{key_id}")

        assert response.status_code == status, response.text
        assert isinstance(response.json()["detail"], str)


class TestCli:
    def test_create_list_and_revoke_on_a_running_server(
        self, keys_server: KeysServer, raw: httpx.Client
    ) -> None:
        name = unique("cli")
        made = kelpie_cli(keys_server.database, "create", name, "--expires-in", "1d")
        key = made.stdout.strip()
        assert key.startswith("kelpie_")
        assert "not shown again" in made.stderr

        # A key the server has not loaded yet is found by its id: it works at once.
        assert raw.get("/v1/agents", headers=bearer(key)).status_code == 200
        keys = json.loads(kelpie_cli(keys_server.database, "list", "--json").stdout)
        mine = next(item for item in keys if item["name"] == name)
        assert key not in json.dumps(keys)
        assert mine["expires_at"] is not None
        table = kelpie_cli(keys_server.database, "list").stdout
        assert name in table
        assert key not in table

        revoked = kelpie_cli(keys_server.database, "revoke", name)
        assert mine["id"] in revoked.stdout
        assert wait_for_status(raw, bearer(key), 401) <= PROPAGATION_S
        assert "revoked" in raw.get("/v1/agents", headers=bearer(key)).json()["detail"]
        keys = json.loads(kelpie_cli(keys_server.database, "list", "--json").stdout)
        assert next(item for item in keys if item["id"] == mine["id"])["revoked_at"] is not None

    def test_revoking_an_unknown_key_fails_with_a_reason(self, keys_server: KeysServer) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KELPIE_")}
        argv = [sys.executable, "-m", "kelpie", "keys", "revoke", "no-such-key"]
        argv += keys_server.database
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

        assert done.returncode != 0
        assert "no API key has the id or the name 'no-such-key'" in done.stderr


class TestSdk:
    def test_the_sdk_works_with_a_key(self, keys_server: KeysServer, admin: httpx.Client) -> None:
        key = str(create_key(admin, name="sdk")["key"])
        with Letta(base_url=keys_server.url, api_key=key, max_retries=0) as letta:
            agent = letta.agents.create(name=unique("keyed"), model=MODEL)

            assert letta.agents.retrieve(agent.id).id == agent.id

    def test_the_sdk_is_refused_with_a_revoked_key(
        self, keys_server: KeysServer, admin: httpx.Client
    ) -> None:
        created = create_key(admin, name="gone")
        admin.delete(f"{ADMIN_ROUTE}/{created['id']}")

        with (
            Letta(base_url=keys_server.url, api_key=str(created["key"]), max_retries=0) as letta,
            pytest.raises(AuthenticationError),
        ):
            letta.agents.list()

    def test_the_sdk_sees_a_rate_limit_as_rate_limit_error(
        self, keys_server: KeysServer, admin: httpx.Client
    ) -> None:
        key = str(create_key(admin, rate_limit_per_minute=1)["key"])
        with Letta(base_url=keys_server.url, api_key=key, max_retries=0) as letta:
            letta.agents.list()
            with pytest.raises(RateLimitError):
                letta.agents.list()


def test_an_open_server_has_no_admin(http: httpx.Client) -> None:
    """No password and no key: nobody who merely reaches the server may make the first key
    (and so lock everyone else out)."""
    for response in (http.get(ADMIN_ROUTE), http.post(ADMIN_ROUTE, json={"name": "x"})):
        assert response.status_code == 403, response.text
        assert "kelpie keys create --admin" in response.json()["detail"]
    assert http.get("/v1/agents").status_code == 200


def test_guessing_keys_is_throttled_per_address(
    kelpie_launcher: KelpieStarter, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = kelpie_cli(kelpie_launcher.database_args(data_dir), "create", "only").stdout.strip()
    url = kelpie_launcher.start({"KELPIE_AUTH_FAILURES_MAX": "3"}, data_dir=data_dir)
    try:
        with httpx.Client(base_url=url, timeout=30) as raw:
            guesses = [raw.get("/v1/agents", headers=bearer(NO_KEY)) for _ in range(3)]
            throttled = raw.get("/v1/agents", headers=bearer(key))

            assert [guess.status_code for guess in guesses] == [401] * 3
            assert throttled.status_code == 429
            assert int(throttled.headers["retry-after"]) >= 1
            assert "Too many failed authentication attempts" in throttled.json()["detail"]
    finally:
        kelpie_launcher.stop(url)
