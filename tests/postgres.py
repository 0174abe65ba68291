"""A throwaway PostgreSQL server for tests: Debian's binaries (installed by
scripts/ensure-postgresql.sh), a new cluster in a temp folder, listening on 127.0.0.1 on a
free port only, with a password (scram-sha-256) for TCP. PostgreSQL refuses to run as root, so
as root the server runs as the `postgres` user (Debian's package creates it) through runuser."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "alphagen"
PASSWORD = "test-only-pg-password"  # a throwaway cluster on loopback


def find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} is missing: run scripts/ensure-postgresql.sh (make test does)")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    run_as: str | None  # the user the server runs as when we are root

    def env(self, db: str) -> dict[str, str]:
        """The instance's connection settings (dagster.postgres.yaml reads these)."""
        return {"ALPHAGEN_PG_HOST": "127.0.0.1", "ALPHAGEN_PG_PORT": str(self.port), "ALPHAGEN_PG_USER": USER,
                "ALPHAGEN_PG_PASSWORD": PASSWORD, "ALPHAGEN_PG_DB": db}

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname=db,
                                connect_timeout=5)

    def create_database(self, name: str) -> None:
        con = self.connect()
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()

    def stop(self) -> None:
        self._run(find_bin("pg_ctl"), "stop", "-D", str(self.folder / "data"), "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.run_as:
            cmd = ("runuser", "-u", self.run_as, "--", *cmd)
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def start_postgres() -> PostgresServer:
    run_as = None
    folder = Path(tempfile.mkdtemp(prefix="alphagen-pg-"))
    if os.geteuid() == 0:
        run_as = "postgres" if _user_exists("postgres") else "nobody"
        account = pwd.getpwnam(run_as)
        os.chown(folder, account.pw_uid, account.pw_gid)
    server = PostgresServer(folder, _free_port(), run_as)
    pwfile = folder / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, pwd.getpwnam(run_as).pw_uid, -1)
    try:
        server._run(find_bin("initdb"), "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={folder} "
                   "-c fsync=off -c full_page_writes=off")
        server._run(find_bin("pg_ctl"), "start", "-D", str(folder / "data"), "-l", str(folder / "server.log"),
                    "-o", options, "-w", "-t", "30")
        _wait_until_it_answers(server)
    except BaseException as exc:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        server.stop()
        if isinstance(exc, subprocess.CalledProcessError):
            raise RuntimeError(f"{exc.cmd} failed: {exc.stderr}\n{log}") from None
        raise
    return server


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _wait_until_it_answers(server: PostgresServer, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.connect().close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
