"""Subscriber lists as users write them: CSV files and the address rules they must follow."""

from scheduler.audience.address import address_key, address_problem, normalize_address
from scheduler.audience.csvfile import CsvResult, RowProblem, SubscriberRow, iter_csv, read_csv

__all__ = [
    "CsvResult",
    "RowProblem",
    "SubscriberRow",
    "address_key",
    "address_problem",
    "iter_csv",
    "normalize_address",
    "read_csv",
]
