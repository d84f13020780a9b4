"""A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary folder, `postgres`
on 127.0.0.1 and a free port with its socket in that folder, stopped and removed at the end.

Run as root (CI), the server runs as the `postgres` user through `runuser`, since PostgreSQL
refuses to run as root. The binaries come from Debian's `postgresql` package
(/usr/lib/postgresql/<version>/bin), or from PATH.
"""

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

import psycopg

SUPERUSER = "fuelsim"
START_WAIT_S = 60.0


class ClusterError(RuntimeError):
    pass


def bin_dir() -> Path:
    """The newest Debian PostgreSQL bin folder, else the folder of `initdb` on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ClusterError("PostgreSQL is not installed: no initdb (apt-get install postgresql)")
    return Path(initdb).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb + postgres; raises ClusterError (with the server's log) if it cannot start."""
    binaries = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="fuelsim-pg-"))
    data, log = root / "data", root / "postgres.log"
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise ClusterError("running as root but there is no `postgres` user") from None
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *as_user,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise ClusterError(f"initdb failed: {init.stderr or init.stdout}")
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                *as_user,
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "fsync=off",  # a throwaway cluster: durability is SQLite's test's business
                "-c",
                "max_connections=200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(root, port, process)
    deadline = time.monotonic() + START_WAIT_S
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            shutil.rmtree(root, ignore_errors=True)
            raise ClusterError(f"postgres exited with {process.returncode}: {text}")
        try:
            psycopg.connect(cluster.url(), connect_timeout=2).close()
            return cluster
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                text = log.read_text(errors="replace")
                cluster.stop()
                raise ClusterError(f"postgres did not accept connections: {text}") from None
            time.sleep(0.1)
