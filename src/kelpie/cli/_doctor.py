"""`kelpie doctor`: checks what a server needs on this host, with the settings `kelpie serve`
would use, and says what is wrong and how to fix it. Exits 1 when a required check fails.

The checks are the server's own: its embedder is opened by `open_embedder` and its
sandbox host check is `ProcessSandbox.start` (in a scratch directory, with no warm pool);
nothing is written to the data dir but a probe file, and the database is opened read-only."""

import asyncio
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final, Literal

import click

from kelpie.cli._config import config_option, load_config
from kelpie.cli._env import POSTGRES_URL_PREFIXES, SQLITE_URL_PREFIX, open_embedder
from kelpie.env import Config
from kelpie.errors import KelpieError
from kelpie.llm import configured_providers, fetch_model_ids
from kelpie.memory import LocalEmbedder
from kelpie.sandbox import GvisorSessions, ProcessSandbox, ToolJob
from kelpie.storage import integrity_problems, pending_migrations

FREE_BYTES_FAIL: Final = 100 * 2**20
FREE_BYTES_WARN: Final = 2**30
PROVIDER_TIMEOUT_S: Final = 10.0
EMBED_TIMEOUT_S: Final = 60.0
SANDBOX_TIMEOUT_S: Final = 60.0

Status = Literal["ok", "warn", "FAIL"]


@dataclasses.dataclass(frozen=True)
class Finding:
    status: Status
    check: str
    detail: str
    fix: str = ""


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data_dir(config: Config) -> list[Finding]:
    data_dir = config.data_dir
    found: list[Finding] = []
    if not data_dir.exists():
        parent = _existing_ancestor(data_dir)
        if not os.access(parent, os.W_OK | os.X_OK):
            fix = f"create it, or make {parent} writable by this user, or pick another --data-dir"
            return [Finding("FAIL", "data dir", f"{data_dir} does not exist", fix)]
        found.append(Finding("warn", "data dir", f"{data_dir} does not exist yet (serve makes it)"))
    elif not data_dir.is_dir():
        return [Finding("FAIL", "data dir", f"{data_dir} is not a directory", "pick another")]
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".kelpie-doctor-"):
                pass
        except OSError as error:
            fix = f"make {data_dir} writable by uid {os.geteuid()} (chown/chmod)"
            return [Finding("FAIL", "data dir", f"{data_dir} is not writable: {error}", fix)]
        found.append(Finding("ok", "data dir", f"{data_dir} exists and is writable"))
    free = shutil.disk_usage(_existing_ancestor(data_dir)).free
    text = f"{free / 2**30:.1f} GiB free"
    if free < FREE_BYTES_FAIL:
        found.append(Finding("FAIL", "free space", text, "free disk space or move the data dir"))
    elif free < FREE_BYTES_WARN:
        found.append(Finding("warn", "free space", text, "less than 1 GiB: writes may soon fail"))
    else:
        found.append(Finding("ok", "free space", text))
    return found


def check_database(config: Config) -> list[Finding]:
    url = config.database_url
    if url.startswith(POSTGRES_URL_PREFIXES):
        return check_postgres(url)
    if not url.startswith(SQLITE_URL_PREFIX):
        fix = "use sqlite:///path or postgresql://user:password@host/database"
        return [Finding("FAIL", "database", f"unsupported URL {url}", fix)]
    path = Path(url.removeprefix(SQLITE_URL_PREFIX))
    if not path.exists():
        return [Finding("warn", "database", f"{path} does not exist yet (serve creates it)")]
    try:
        pending = pending_migrations(path)
        problems = integrity_problems(path)
    except KelpieError as error:
        fix = "check the file's permissions, or restore it from a backup"
        return [Finding("FAIL", "database", error.detail, fix)]
    found = [
        Finding(
            "warn",
            "migrations",
            f"{len(pending)} pending: {', '.join(pending)}",
            "applied at the next start",
        )
        if pending
        else Finding("ok", "migrations", "current")
    ]
    if problems:
        fix = "stop the server, restore from a backup (or try sqlite3's .recover)"
        found.append(Finding("FAIL", "integrity", "; ".join(problems[:5]), fix))
    else:
        found.append(Finding("ok", "integrity", f"{path}: quick_check ok"))
    return found


def check_postgres(url: str) -> list[Finding]:
    """Reachable, new enough, migrated (nothing from a newer Kelpie), and whether vector
    search has pgvector's indexes or falls back to exact search."""
    try:
        from kelpie.storage import _pg_migrations
    except ImportError as error:
        fix = "pip install 'kelpie[postgres]'"
        return [Finding("FAIL", "database", f"the PostgreSQL driver is missing ({error})", fix)]
    try:
        current = _pg_migrations.check(url)
        pgvector = current and _pg_migrations.has_pgvector(url)
    except KelpieError as error:
        return [Finding("FAIL", "database", error.detail, "check the URL and that it runs")]
    found = [
        Finding("ok", "database", f"{_pg_migrations.redacted(url)} reachable"),
        Finding("ok", "migrations", "current")
        if current
        else Finding("warn", "migrations", "pending", "applied at the next start"),
    ]
    if current and not pgvector:
        fix = "install pgvector on the server for indexed vector search"
        found.append(Finding("warn", "pgvector", "missing: vector search is exact", fix))
    elif current:
        found.append(Finding("ok", "pgvector", "HNSW indexes per embedding dimension"))
    return found


async def check_providers(config: Config) -> list[Finding]:
    providers = configured_providers(config)
    if not providers:
        fix = "set OPENAI_API_KEY / OPENAI_BASE_URL or ANTHROPIC_API_KEY"
        return [Finding("warn", "providers", "none configured: agents cannot think", fix)]
    found = []
    for provider in providers:
        check = f"provider {provider.name}"
        try:
            async with asyncio.timeout(PROVIDER_TIMEOUT_S):
                ids = await fetch_model_ids(provider)
        except Exception as error:  # any SDK or network failure is the finding
            text = str(error) or type(error).__name__
            if provider.api_key:
                text = text.replace(provider.api_key, "***")
            fix = f"check the key and that {provider.base_url} is reachable"
            found.append(Finding("FAIL", check, f"{provider.base_url}: {text}"[:300], fix))
        else:
            found.append(Finding("ok", check, f"{provider.base_url}: {len(ids)} models"))
    return found


async def check_embedder(config: Config) -> list[Finding]:
    try:
        embedder = open_embedder(config)
    except SystemExit as error:
        return [Finding("FAIL", "embedder", str(error.code))]
    try:
        async with asyncio.timeout(EMBED_TIMEOUT_S):
            vectors = await embedder.embed(["kelpie doctor"])
    except Exception as error:  # any failure to embed is the finding
        fix = "see the error; KELPIE_EMBEDDING_MODEL picks another embedder"
        return [Finding("FAIL", "embedder", f"{embedder.model}: {error}", fix)]
    finally:
        if isinstance(embedder, LocalEmbedder):
            embedder.close()
    shape = tuple(vectors.shape)
    if shape != (1, embedder.dim):
        return [Finding("FAIL", "embedder", f"{embedder.model}: vectors of shape {shape}")]
    return [Finding("ok", "embedder", f"{embedder.model}: embeds ({embedder.dim} dimensions)")]


async def check_sandbox(config: Config) -> list[Finding]:
    with tempfile.TemporaryDirectory(prefix="kelpie-doctor-") as scratch:
        sandbox = ProcessSandbox(
            root_dir=Path(scratch),
            pool_size=0,
            code_sessions=config.code_sessions,
            code_interpreter=config.code_interpreter,
        )
        try:
            async with asyncio.timeout(SANDBOX_TIMEOUT_S):
                await sandbox.start()
                await sandbox.ready()
                if isinstance(sandbox.sessions, GvisorSessions):
                    await sandbox.sessions.ready()
                interpreted = await _interpreter_finding(sandbox)
            return [*_sandbox_findings(sandbox), interpreted]
        finally:
            await sandbox.close()


async def _interpreter_finding(sandbox: ProcessSandbox) -> Finding:
    """The interpreter tier runs one snippet (it serves code where sessions are off)."""
    off = sandbox.interpreter.unavailable_reason
    if off is not None:
        return Finding("warn", "interpreter", off, "tool-only snippets take a process instead")
    job = ToolJob(source_code="sum([1, 2, 3])", function_name=None)
    result = await sandbox.interpreter.run(job)
    if result.status != "success" or result.func_return != 6:
        detail = result.error or f"answered {result.func_return!r}"
        return Finding("warn", "interpreter", detail, "tool-only snippets take a process instead")
    return Finding("ok", "interpreter", "Monty runs snippets confined")


def _sandbox_findings(sandbox: ProcessSandbox) -> list[Finding]:
    description = sandbox.description
    if description is None:
        fix = (
            "install bubblewrap and allow user namespaces"
            " (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
        )
        reason = sandbox.unavailable_reason or "unknown"
        return [
            Finding("FAIL", "process sandbox", f"off: {reason}; custom tools will not run", fix)
        ]
    found = [
        Finding(
            "ok",
            "bubblewrap",
            f"{description.bubblewrap_version}, namespaces {'+'.join(description.namespaces)}",
        ),
        Finding("ok", "seccomp", "filter loads")
        if description.seccomp
        else Finding("FAIL", "seccomp", "no filter"),
        Finding("ok", "landlock", f"ABI {description.landlock_abi}")
        if description.landlock_abi
        else Finding(
            "warn", "landlock", "not available", "a Linux kernel >= 5.13 with lsm=landlock"
        ),
        Finding("ok", "cgroups", "v1 " + "+".join(description.cgroups))
        if description.cgroups
        else Finding(
            "warn",
            "cgroups",
            "none: rlimits only",
            "run as root with cgroup v1 controllers mounted",
        ),
    ]
    sessions_off = sandbox.sessions.unavailable_reason
    if sessions_off is None:
        found.append(Finding("ok", "gVisor", "runsc runs: code sessions keep their state"))
    else:
        fix = "install runsc (scripts/bootstrap) and run as root; else each run starts fresh"
        found.append(Finding("warn", "gVisor", sessions_off, fix))
    return found


async def run_checks(config: Config) -> list[Finding]:
    found = check_data_dir(config) + check_database(config)
    found += await check_providers(config)
    found += await check_embedder(config)
    found += await check_sandbox(config)
    return found


@click.command()
@config_option
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where data lives (env KELPIE_DATA_DIR; default ~/.kelpie).",
)
@click.option("--db", "db_url", default=None, help="Database URL (env KELPIE_DB_URL).")
def doctor(config_file: Path | None, data_dir: Path | None, db_url: str | None) -> None:
    """Check this host and the configuration: data dir, database, providers, embedder and
    sandbox. Exits 1 when something required fails."""
    config = load_config(config_file, data_dir=data_dir, db_url=db_url)
    findings = asyncio.run(run_checks(config))
    for finding in findings:
        click.echo(f"{finding.status:<4}  {finding.check}: {finding.detail}")
        if finding.fix and finding.status != "ok":
            click.echo(f"      fix: {finding.fix}")
    failed = [f for f in findings if f.status == "FAIL"]
    if failed:
        click.echo(f"{len(failed)} check(s) failed")
        raise SystemExit(1)
    click.echo("all required checks passed")
