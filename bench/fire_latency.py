"""Benchmark: how soon after its instant does an occurrence's first message leave?

    .venv/bin/python bench/fire_latency.py [--occurrences 20] [--recipients 200] [--gap 1.5]

Runs the real embedded daemon (`scheduler run`) on a project with N one-off campaigns due
`--gap` seconds apart, each emailing `--recipients` subscribers through a local SMTP server,
and measures, per occurrence, the time from its instant to the first message the server
accepted. The last line is machine readable:
    fire_latency_p50_s=0.21 fire_latency_p95_s=0.48
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from smtp_server import SmtpTestServer  # noqa: E402

from scheduler.audience.csvfile import SubscriberRow  # noqa: E402
from scheduler.store.db import make_engine, migrate  # noqa: E402
from scheduler.store.subscribers import import_rows  # noqa: E402

HEAD = """\
organization:
  name: Bench Org
  website: https://example.org
  postal_address: 1 Main Street, Town
  timezone: UTC
  languages: [en, es]
senders:
  org: {{name: Bench Org, address: news@example.org}}
lists:
  members: {{name: Members}}
channels:
  email: {{type: smtp, url: "{url}", sender: org, connections: 4}}
settings:
  statements_dir: {statements}
  templates_dir: {templates}
campaigns:
"""

CAMPAIGN = """\
  c{n:02d}:
    name: Campaign {n}
    date: {when:%Y-%m-%d}
    time: "{when:%H:%M:%S}"
    statement: may-day
    audience: [members]
    steps:
      statement: {{channels: [email], template: statement}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--occurrences", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--gap", type=float, default=1.5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    with SmtpTestServer() as server:
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=12)
        instants = [
            start + dt.timedelta(seconds=round(i * args.gap)) for i in range(args.occurrences)
        ]
        text = HEAD.format(
            url=server.url, statements=ROOT / "statements", templates=ROOT / "templates"
        )
        text += "".join(CAMPAIGN.format(n=i, when=w) for i, w in enumerate(instants))
        config = work / "campaigns.yaml"
        config.write_text(text)
        url = f"sqlite:///{work / 'state.db'}"
        engine = make_engine(url)
        migrate(engine)
        import_rows(
            engine,
            "members",
            [
                SubscriberRow(email=f"m{i}@example.org", name=f"M {i}", language="en", row=i + 2)
                for i in range(args.recipients)
            ],
            source="bench",
        )
        engine.dispose()
        env = {**os.environ, "SCHEDULER_CONFIG": str(config), "SCHEDULER_DATABASE_URL": url}
        log = (work / "run.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = instants[-1].timestamp() + 30
            total = args.occurrences * args.recipients
            while len(server.messages) < total and time.time() < deadline:
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        # Which occurrence a message belongs to: its "read online" link names the campaign.
        first: dict[str, float] = {}
        for message in server.messages:
            parsed = email.message_from_bytes(message.data, policy=email.policy.default)
            body = parsed.get_body(("plain",))
            text = body.get_content() if body is not None else ""  # type: ignore[attr-defined]
            found = re.search(r"/archive/(c\d\d)/", text)
            if found:
                cid = found[1]
                first[cid] = min(first.get(cid, message.received_at), message.received_at)
        latencies = [
            first[f"c{i:02d}"] - instant.timestamp()
            for i, instant in enumerate(instants)
            if f"c{i:02d}" in first
        ]
        if len(latencies) < len(instants):
            print(
                f"only {len(latencies)} of {len(instants)} occurrences sent anything; see "
                f"{work / 'run.log'}"
            )
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        print(
            f"{len(latencies)} occurrences x {args.recipients} recipients; received "
            f"{len(server.messages)} messages; latencies (s): "
            + " ".join(f"{x:.3f}" for x in latencies)
        )
        print(f"fire_latency_p50_s={p50:.3f} fire_latency_p95_s={p95:.3f}")


if __name__ == "__main__":
    main()
