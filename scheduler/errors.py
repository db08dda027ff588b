"""One error tree for the whole project: callers catch meaning, not library internals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a user's file, pointing at where to look."""

    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    column: int  # 1-based; 0 when unknown
    message: str
    hint: str | None = None
    severity: str = "error"

    def format(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        text = f"{where}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SchedulerError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SchedulerError):
    """campaigns.yaml, a statement, a template or a list is invalid; carries every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.format() for d in diagnostics))


class TemplateError(SchedulerError):
    """A template failed to compile or to render."""


class StatementError(SchedulerError):
    """A statement file is missing or malformed."""


class SecretError(SchedulerError):
    """A `${ENV_VAR}` reference could not be resolved."""


class UnknownCampaignError(SchedulerError):
    """The named campaign, step or channel does not exist in campaigns.yaml."""


class SendError(SchedulerError):
    """A message could not be delivered."""


class TransientSendError(SendError):
    """Delivery failed for now (4xx, timeout, connection reset, 429); retry later.

    `retry_after`: seconds the server asked us to wait, when it said. `maybe_accepted`: the
    request reached the server and its answer was lost (a read timeout, a dropped
    connection), so the message or post may exist already. `status`: the protocol's code.
    `unreachable`: the server itself is down (no connection, or its gateway says 502/504),
    not this message: the channel waits for it as a whole instead of counting attempts.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        maybe_accepted: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.maybe_accepted = maybe_accepted
        self.unreachable = unreachable


class PermanentSendError(SendError):
    """Delivery failed for good (5xx, rejected credentials, gone, invalid); do not retry."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
