"""Where the dashboard's sends run: off the request thread, so "Send now" on a list of
100,000 answers at once and the page shows the progress.

Each job gets its own `DeliveryContext` (its connections are closed when it ends). A web
process stopped mid-send leaves its deliveries leased, not lost: after the lease the clock,
`scheduler send` or another click resumes them, sending nothing twice. Tests run jobs in the
request (`background=False`) so the result is there with the response.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import Engine

from scheduler.config.project import Project
from scheduler.delivery.context import DeliveryContext

log = logging.getLogger(__name__)

Job = Callable[[DeliveryContext], object]


class Sends:
    def __init__(
        self, engine: Engine, *, background: bool = True, redis_url: str | None = None
    ) -> None:
        self.engine = engine
        self.background = background
        # Rate limits are shared with the workers through Redis when given.
        self.redis_url = redis_url

    def run(self, project: Project, name: str, job: Job) -> None:
        def work() -> None:
            ctx = DeliveryContext(project, self.engine, redis_url=self.redis_url)
            try:
                job(ctx)
            except Exception:  # the ledger keeps what went out; the log says why it stopped
                log.exception("event=dashboard_send_failed job=%s", name)
            finally:
                ctx.close()

        if self.background:
            threading.Thread(target=work, name=f"dashboard-{name}", daemon=True).start()
        else:
            work()
