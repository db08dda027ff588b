"""Benchmark: fire one occurrence to N subscribers into Postfix's smtp-sink, four ways.

    .venv/bin/python bench/send_throughput.py [--recipients 50000] [--skip-celery]

Needs Debian's `postfix` package (smtp-sink, smtp-source), Redis at 127.0.0.1:6379 for the
Celery run, and PostgreSQL at 127.0.0.1:5432 (database `test`; $SCHEDULER_TEST_POSTGRES and
$SCHEDULER_TEST_REDIS, when set, name others) for the Celery run's store
(a throwaway schema; two worker processes writing one SQLite file would measure SQLite's
write lock, not the sender). Measures, against the same sink:

  (a) embedded  `scheduler send` in one process (SQLite), end to end: start-up, list sync,
                fan-out, rendering, composing, SMTP, ledger writes
  (b) celery    `scheduler send --enqueue` + one `scheduler worker --concurrency 2`
                (2 worker processes), from enqueue until the ledger says all sent
  (c) naive     EmailMessage + smtplib, one message at a time, on a sample of recipients
  (d) ceiling   `smtp-source -s 4 -d -l 4096`: what this machine and sink can take
  (e) signed    composing and DKIM-signing (RSA-2048, then Ed25519) in one process

Peak RSS is the kernel's high-water mark (VmHWM / ru_maxrss) of the sending processes.
The Celery run also prints where its time went: the enqueueing command's share, and the CPU
the worker processes and PostgreSQL spent (on 2 cores, twice the elapsed time is all there
is). BENCH_PROFILE_CELERY=FILE samples the worker with py-spy into FILE (BENCH_PROFILE_GIL=1:
only the thread holding the interpreter lock); bench/profile_send.sh does the embedded run.
The last line is machine readable.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installed import compile_package  # noqa: E402

from scheduler.audience.csvfile import SubscriberRow  # noqa: E402
from scheduler.store.db import make_engine, migrate  # noqa: E402
from scheduler.store.schema import deliveries, occurrences  # noqa: E402
from scheduler.store.subscribers import import_rows  # noqa: E402

# The test suite's services when set (each developer on a shared machine has their own).
POSTGRES = os.environ.get(
    "SCHEDULER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("SCHEDULER_TEST_REDIS", "redis://127.0.0.1:6379/14")
OCCURRENCE = "may-day/2030/statement"

CONFIG = """\
organization:
  name: International Alliance of Migrant Workers
  website: https://migrant-alliance.example.org
  postal_address: "Rue des Travailleurs 18, 1000 Brussels, Belgium"
  timezone: Europe/Brussels
  languages: [en, es]
  public_url: https://lists.migrant-alliance.example.org
  unsubscribe_mailto: unsubscribe@migrant-alliance.example.org
senders:
  alliance:
    {{name: Migrant Workers Alliance, address: statements@migrant-alliance.example.org}}
lists:
  members: {{name: Members}}
channels:
  email: {{type: smtp, url: "smtp://127.0.0.1:{port}", sender: alliance, connections: 4}}
campaigns:
  may-day:
    name: {{en: May Day, es: Primero de Mayo}}
    date: "05-01"
    time: "07:00"
    statement: may-day
    audience: [members]
    steps:
      statement: {{channels: [email], template: statement}}
settings:
  statements_dir: {statements}
  templates_dir: {templates}
  batch_size: 250
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    proc = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"])
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("smtp-sink did not start: apt-get install postfix")


def fill(url: str, n: int) -> None:
    engine = make_engine(url)
    migrate(engine)
    chunk = 20_000
    started = time.perf_counter()
    for start in range(0, n, chunk):
        rows = [
            SubscriberRow(
                email=f"member.{i}@chapter{i % 97}.example.org",
                name=f"Member Número {i}" if i % 5 else None,
                language="es" if i % 3 == 0 else "en",
                row=i + 2,
            )
            for i in range(start, min(n, start + chunk))
        ]
        import_rows(engine, "members", rows, source="bench")
    engine.dispose()
    print(f"  {n:,} subscribers in {time.perf_counter() - started:.1f}s", flush=True)


def sent_count(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = (
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.state == "sent")
            )
            or 0
        )
    engine.dispose()
    return int(n)


def run_embedded(env: dict[str, str], n: int) -> tuple[float, float]:
    started = time.perf_counter()
    # bench/profile_send.sh sets BENCH_PROFILE: the same send, sampled by py-spy (with
    # BENCH_PROFILE_GIL, only the thread holding the interpreter lock: where CPU goes).
    profile = os.environ.get("BENCH_PROFILE")
    wrapper = (
        [
            "py-spy",
            "record",
            "--subprocesses",
            "--rate",
            "200",
            *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []),
            "--format",
            "raw",
            "-o",
            profile,
            "--",
        ]
        if profile
        else []
    )
    proc = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "scheduler",
            "send",
            "may-day",
            "--occurrence",
            OCCURRENCE,
            "--now",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, _, status, usage = _wait4(proc)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(
            f"embedded send failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    sent = sent_count(env["SCHEDULER_DATABASE_URL"])
    if sent != n:
        raise SystemExit(f"embedded: {sent} of {n} sent")
    return n / elapsed, usage.ru_maxrss / 1024


def _wait4(proc: subprocess.Popen[bytes]) -> tuple[int, int, int, resource.struct_rusage]:
    out = proc.stdout.read() if proc.stdout else b""
    pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return pid, len(out), proc.returncode, usage


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _cpu_ticks(pid: int | str, command: str | None = None) -> int:
    """User + system CPU of a process in clock ticks (with `command`: 0 unless it is so
    named, and counting its reaped children too); 0 for one that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    if command is not None and stat[stat.index("(") + 1 : stat.rindex(")")] != command:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime stime, then cutime cstime
    return sum(int(f) for f in fields[11 : 13 if command is None else 15])


def _cpu_seconds(command: str) -> float:
    """CPU of every process named `command`, with its reaped children."""
    ticks = sum(_cpu_ticks(p, command) for p in os.listdir("/proc") if p.isdigit())
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its living children."""
    return sum(_cpu_ticks(p) for p in [pid, *_children(pid)]) / os.sysconf("SC_CLK_TCK")


def run_celery(env: dict[str, str], n: int) -> tuple[float, float]:
    # BENCH_PROFILE_CELERY: the worker (and its processes) sampled by py-spy into that file.
    profile = os.environ.get("BENCH_PROFILE_CELERY")
    wrapper = (
        ["py-spy", "record", "--subprocesses", "--rate", "200", "--format", "raw", "-o", profile]
        + (["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else [])
        + ["--"]
        if profile
        else []
    )
    worker = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "scheduler",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # worker start-up is not part of sending
        started = time.perf_counter()
        database_before = _cpu_seconds("postgres")
        workers_before = _tree_cpu_seconds(worker.pid)
        enqueue = subprocess.run(
            [
                sys.executable,
                "-m",
                "scheduler",
                "send",
                "may-day",
                "--occurrence",
                OCCURRENCE,
                "--now",
                "--enqueue",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if enqueue.returncode != 0:
            raise SystemExit(f"enqueue failed: {enqueue.stderr}")
        enqueued = time.perf_counter() - started
        peak = 0.0
        url = env["SCHEDULER_DATABASE_URL"]
        deadline = time.monotonic() + max(600, n / 200)
        # Until the occurrence is `done` (the last batch found nothing left to send): one
        # row read on one connection. Counting sent deliveries every poll cost PostgreSQL
        # half a CPU-second per run, taken from the workers being measured.
        poll = make_engine(url)
        try:
            while True:
                with poll.connect() as conn:
                    state = conn.scalar(
                        sa.select(occurrences.c.state).where(occurrences.c.id == OCCURRENCE)
                    )
                if state == "done":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"celery: only {sent_count(url)} of {n} sent")
                peak = max([peak, *(_hwm_mb(p) for p in _children(worker.pid))])
                time.sleep(0.1)
        finally:
            poll.dispose()
        elapsed = time.perf_counter() - started
        if sent_count(url) != n:
            raise SystemExit(f"celery: the occurrence is done with {sent_count(url)} of {n} sent")
        peak = max([peak, *(_hwm_mb(p) for p in _children(worker.pid))])
        # Where the run's time went: the enqueueing command (start-up, list sync, fan-out)
        # and the CPU the workers and PostgreSQL spent (2 cores: 2 x elapsed is all there is).
        print(
            f"  {elapsed:.1f} s: enqueue {enqueued:.1f} s; CPU workers "
            f"{_tree_cpu_seconds(worker.pid) - workers_before:.1f} s, PostgreSQL "
            f"{_cpu_seconds('postgres') - database_before:.1f} s",
            flush=True,
        )
        return n / elapsed, peak
    finally:
        if profile:
            # Stop the worker py-spy runs, so that py-spy writes its samples and ends.
            for pid in _children(worker.pid):
                os.kill(pid, signal.SIGTERM)
        else:
            # The main process only: its warm shutdown lets a task still returning finish.
            # SIGTERM to the whole group killed the pool processes under it (a
            # WorkerLostError and its traceback after every run).
            os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def run_naive(port: int, sample: int, config: Path) -> float:
    """The same campaign email (rendered once), built with EmailMessage per recipient."""
    from email.message import EmailMessage

    from scheduler import calendar
    from scheduler.config.project import load_project
    from scheduler.content.render import Recipient, Renderer

    project = load_project(config)
    rendered = Renderer(project).email(
        calendar.occurrence(project.config, OCCURRENCE),
        Recipient(email="member@example.org", name="Member", language="es", subscriber_id=1),
    )
    body_html, body_text = rendered.html, rendered.text
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(sample):
            msg = EmailMessage()
            msg["From"] = "International Alliance <statements@migrant-alliance.example.org>"
            msg["To"] = f"Member Número {i} <member.{i}@example.org>"
            msg["Subject"] = "Primero de Mayo: una sola clase trabajadora, sin fronteras"
            msg["Message-ID"] = f"<{i}.naive@migrant-alliance.example.org>"
            msg["List-Unsubscribe"] = f"<https://lists.example.org/unsubscribe/{i}>"
            msg.set_content(body_text)
            msg.add_alternative(body_html, subtype="html")
            smtp.send_message(msg)
    return sample / (time.perf_counter() - started)


def run_signed(config: Path, count: int, kind: str) -> tuple[float, float]:
    """Compose and DKIM-sign `count` messages in this one process (no sending): what signing
    leaves of a process's speed. `kind`: "rsa" (2048 bits) or "ed25519". Returns messages per
    second of wall-clock time and per second of this process's CPU time (on a shared machine
    the second is what one process can do; the first also measures the other tenants)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from scheduler import calendar
    from scheduler.config.project import load_project
    from scheduler.content.render import Renderer
    from scheduler.delivery.emailing import EmailComposer
    from scheduler.mail.dkim import DkimSigner

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    project = load_project(config)
    occ = calendar.occurrence(project.config, OCCURRENCE)
    composer = EmailComposer(Renderer(project), occ, "email", date=occ.instant)
    signer = DkimSigner("bench", composer.domain, pem)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        # As the sender does (delivery/batch.py): the composer vouches for wire-ready bytes,
        # so the signer skips its own line-ending scan.
        data, ready = composer.compose_for_wire(
            subscriber_id=i + 1,
            email_address=f"member.{i}@chapter{i % 97}.example.org",
            name=f"Member Número {i}" if i % 5 else None,
            language="es" if i % 3 == 0 else "en",
        )
        signer.sign(data, crlf=ready)
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def run_ceiling(port: int, count: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    subprocess.run(
        [source, "-s", "4", "-d", "-l", "4096", "-m", str(count), f"127.0.0.1:{port}"], check=True
    )
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--naive-sample", type=int, default=3000)
    parser.add_argument("--skip-celery", action="store_true")
    args = parser.parse_args()
    compile_package()  # as `pip install` would (bench/installed.py)
    n = args.recipients

    port = free_port()
    sink = start_sink(port)
    work = Path(tempfile.mkdtemp(prefix="bench-send-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES)
    try:
        config = work / "campaigns.yaml"
        config.write_text(
            CONFIG.format(port=port, statements=ROOT / "statements", templates=ROOT / "templates")
        )
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
        base_env.update(
            SCHEDULER_CONFIG=str(config),
            SCHEDULER_SECRET_KEY="bench-key",
            SCHEDULER_SENDER_PROCESSES="cores",
        )

        print(f"(a) embedded, {n:,} recipients", flush=True)
        sqlite_url = f"sqlite:///{work / 'state.db'}"
        fill(sqlite_url, n)
        embedded, embedded_rss = run_embedded({**base_env, "SCHEDULER_DATABASE_URL": sqlite_url}, n)
        print(f"  {embedded:,.0f} msgs/s, peak RSS {embedded_rss:.0f} MB", flush=True)

        celery, celery_rss = 0.0, 0.0
        if not args.skip_celery:
            print(f"(b) celery, 2 worker processes, {n:,} recipients", flush=True)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            pg_url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
            fill(pg_url, n)
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            celery, celery_rss = run_celery(
                {
                    **base_env,
                    "SCHEDULER_DATABASE_URL": pg_url,
                    "SCHEDULER_BROKER_URL": REDIS,
                    "SCHEDULER_QUEUE": queue,
                },
                n,
            )
            print(
                f"  {celery:,.0f} msgs/s, peak RSS per worker process {celery_rss:.0f} MB",
                flush=True,
            )

        print(f"(c) naive EmailMessage + smtplib, {args.naive_sample:,} messages", flush=True)
        naive = run_naive(port, args.naive_sample, config)
        print(f"  {naive:,.0f} msgs/s", flush=True)

        print("(e) compose + DKIM-sign in one process, 5,000 messages", flush=True)
        signed_wall, signed = run_signed(config, 5000, "rsa")
        signed_ed_wall, signed_ed = run_signed(config, 5000, "ed25519")
        print(
            f"  RSA-2048 {signed:,.0f} msgs per CPU-second ({signed_wall:,.0f} msgs/s wall), "
            f"Ed25519 {signed_ed:,.0f} ({signed_ed_wall:,.0f} wall)",
            flush=True,
        )

        print("(d) ceiling: smtp-source -s 4 -d -l 4096", flush=True)
        ceiling = run_ceiling(port, max(20_000, min(n, 100_000)))
        print(f"  {ceiling:,.0f} msgs/s", flush=True)

        print(
            f"embedded/naive = {embedded / naive:.1f}x, celery/naive = "
            f"{(celery / naive) if celery else 0:.1f}x, embedded/ceiling = "
            f"{embedded / ceiling:.2f}, celery/ceiling = {celery / ceiling:.2f}",
            flush=True,
        )
        peak = max(embedded_rss, celery_rss)
        print(
            f"recipients={n} embedded_msgs_per_s={embedded:.0f} celery_msgs_per_s={celery:.0f} "
            f"naive_msgs_per_s={naive:.0f} ceiling_msgs_per_s={ceiling:.0f} "
            f"peak_rss_mb={peak:.0f} signed_msgs_per_s={signed:.0f} "
            f"signed_wall_msgs_per_s={signed_wall:.0f} signed_ed25519_msgs_per_s={signed_ed:.0f}"
        )
    finally:
        sink.terminate()
        sink.wait()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
