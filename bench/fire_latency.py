"""Benchmark: how soon after its instant does an occurrence's first message leave?

    .venv/bin/python bench/fire_latency.py [--occurrences 20] [--recipients 200] [--gap 1.5]
    .venv/bin/python bench/fire_latency.py --recipients 100000 --occurrences 5 --gap 10

Runs the real embedded daemon (`scheduler run`) on a project with N one-off campaigns due
`--gap` seconds apart, each emailing `--recipients` subscribers of a list whose `source` is a
CSV file (so the list sync is part of what is measured) through a local SMTP server, and
measures, per occurrence, the time from its instant to the first message the server
accepted. It stops once every occurrence has sent its first message (all of them, with
--all). The last line is machine readable:
    fire_latency_p50_s=0.21 fire_latency_p95_s=0.48
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
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

from installed import compile_package  # noqa: E402
from smtp_server import SmtpTestServer  # noqa: E402

from scheduler.store.db import make_engine, migrate  # noqa: E402

UNSUBSCRIBE_TOKEN = re.compile(rb"/unsubscribe/([A-Za-z0-9_-]+)\.")


def campaign_of(data: bytes) -> str | None:
    """The campaign a message belongs to: its unsubscribe token names the occurrence (read
    from the header, not the body, so the bench keeps up with 100,000 messages)."""
    found = UNSUBSCRIBE_TOKEN.search(data.split(b"\r\n\r\n", 1)[0])
    if not found:
        return None
    payload = found[1] + b"=" * (-len(found[1]) % 4)
    occurrence = json.loads(base64.urlsafe_b64decode(payload)).get("o", "")
    return str(occurrence).split("/")[0] or None


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
  members: {{name: Members, source: members.csv}}
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
    parser.add_argument("--all", action="store_true", help="wait for every message")
    args = parser.parse_args()
    compile_package()  # as `pip install` would (bench/installed.py)

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    with SmtpTestServer() as server:
        # Time for the daemon to start and, for a big list, to sync it ahead of the first
        # instant (as it would minutes ahead in real use).
        lead = 12 + args.recipients / 4000
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=lead)
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
        with (work / "members.csv").open("w", encoding="utf-8") as f:
            f.write("email,name,language\n")
            f.writelines(f"m{i}@example.org,M {i},en\n" for i in range(args.recipients))
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
        first: dict[str, float] = {}
        seen = 0
        try:
            deadline = instants[-1].timestamp() + 30 + args.recipients / 1000
            total = args.occurrences * args.recipients
            while time.time() < deadline:
                time.sleep(0.2)
                received = server.messages[seen:]
                seen += len(received)
                for message in received:
                    cid = campaign_of(message.data)
                    if cid:
                        first[cid] = min(first.get(cid, message.received_at), message.received_at)
                if seen >= total or (not args.all and len(first) == args.occurrences):
                    break
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=120)
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
            f"{len(server.messages)} messages (load {os.getloadavg()[0]:.1f}); latencies (s): "
            + " ".join(f"{x:.3f}" for x in latencies)
        )
        print(f"fire_latency_p50_s={p50:.3f} fire_latency_p95_s={p95:.3f}")


if __name__ == "__main__":
    main()
