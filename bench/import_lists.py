"""Benchmark: read a generated subscriber CSV and import it into the store, as `lists import`
does (each batch merges while the next is read).

    .venv/bin/python bench/import_lists.py [-n 100000] [--postgres [URL]]

Prints timings per phase; the last line is machine readable:
    import_rows=100000 import_seconds=4.2 rows_per_s=23800
With --postgres the import runs in a throwaway schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scheduler.audience import SubscriberRow, iter_csv, read_csv
from scheduler.store import import_rows, list_counts, make_engine, migrate

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LANGUAGES = ["en", "es", "fr", "pt-BR"]
ZONES = ["", "", "Europe/Madrid", "America/Mexico_City", "Asia/Manila", "Africa/Nairobi"]


def generate(path: Path, n: int) -> None:
    rng = random.Random(1)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["email", "name", "language", "timezone", "chapter"])
        for i in range(n):
            out.writerow(
                [
                    f"Member.{i}@Chapter{i % 97}.Example.org",
                    f"Member Número {i}",
                    rng.choice([*LANGUAGES, ""]),
                    rng.choice(ZONES),
                    f"chapter-{i % 97}",
                ]
            )


def valid_rows(csv_path: Path) -> Iterator[SubscriberRow]:
    """The rows as `lists import` hands them over: as they are read (`iter_csv`)."""
    for item in iter_csv(csv_path, languages=LANGUAGES, default_language="en"):
        assert isinstance(item, SubscriberRow), item
        yield item


def run(engine: Engine, csv_path: Path, label: str) -> float:
    """Read and import the file as `lists import` does (the rows merge while the file is
    still read); the time of reading alone is printed beside it."""
    migrate(engine)
    t = time.perf_counter()
    result = read_csv(csv_path, languages=LANGUAGES, default_language="en")
    read_s = time.perf_counter() - t
    assert result.ok, result.problems[:3]
    started = time.perf_counter()
    report = import_rows(engine, "members", valid_rows(csv_path), source=str(csv_path))
    total = time.perf_counter() - started
    n = len(result.rows)
    print(
        f"{label}: read and import {total:.2f}s ({report.inserted} inserted) = "
        f"{n / total:,.0f} rows/s (reading alone {read_s:.2f}s)"
    )
    t = time.perf_counter()
    again = import_rows(engine, "members", result.rows, source=str(csv_path))
    print(f"{label}: re-import {time.perf_counter() - t:.2f}s ({again.unchanged} unchanged)")
    assert list_counts(engine, "members")["members"]["active"] == n
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rows", type=int, default=100_000)
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, metavar="URL")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        csv_path = Path(tmp) / "members.csv"
        t = time.perf_counter()
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows} rows ({size_mb:.1f} MB) in {time.perf_counter() - t:.2f}s")

        engine = make_engine(f"sqlite:///{tmp}/state/scheduler.db")
        try:
            seconds = run(engine, csv_path, "sqlite")
        finally:
            engine.dispose()
        line = f"import_rows={args.rows} import_seconds={seconds:.2f} "
        line += f"rows_per_s={args.rows / seconds:.0f}"

        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in args.postgres else "?"
            engine = make_engine(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
            try:
                pg_seconds = run(engine, csv_path, "postgresql")
            finally:
                engine.dispose()
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
            line += f" postgres_import_seconds={pg_seconds:.2f}"
            line += f" postgres_rows_per_s={args.rows / pg_seconds:.0f}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
