"""`scheduler web`: serve the subscriber pages, the archive and the dashboard."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from scheduler import settings
from scheduler.console import err, fail, valid_project
from scheduler.tokens import SECRET_ENV

PROXIES_ENV = settings.WEB_PROXIES.name


def register(app: typer.Typer) -> None:
    @app.command()
    def web(
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8000,
        threads: Annotated[int, typer.Option(min=1, max=64, help="worker threads")] = 8,
        dev: Annotated[
            bool,
            typer.Option(help="allow the development signing key (never for real subscribers)"),
        ] = False,
    ) -> None:
        """Serve subscribe, unsubscribe, preferences, the archive and the dashboard."""
        from scheduler.console import store
        from scheduler.delivery.context import broker_url
        from scheduler.web import RedisHits, Sends, create_app, make_hit_counter
        from scheduler.web.auth import DashboardAuth

        if not settings.SECRET_KEY.is_set() and not dev:
            fail(
                f"{SECRET_ENV} is not set: links in emails could not be checked, and anyone "
                "could forge them. Set it (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))') or run with --dev on your own machine.",
                2,
            )
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        project = valid_project()
        engine = store()
        dashboard = DashboardAuth.from_env()
        if not dashboard.enabled:
            err.print(
                "note: the dashboard is off; set SCHEDULER_DASHBOARD_PASSWORD_HASH or "
                "SCHEDULER_DASHBOARD_TOKEN to switch it on",
                markup=False,
            )
        hits = make_hit_counter(broker_url())
        # With Redis up, the dashboard's sends share the workers' rate limits.
        shared = broker_url() if isinstance(hits, RedisHits) else None
        application = create_app(
            project,
            engine,
            hits=hits,
            dashboard=dashboard,
            trusted_proxies=settings.web_proxies(),
            sends=Sends(engine, redis_url=shared),
        )
        url = f"http://{host}:{port}"
        try:
            import waitress
        except ImportError:
            err.print(
                f"note: waitress is not installed; serving {url} with Flask's development "
                "server, which is not meant for the internet (pip install waitress)",
                markup=False,
            )
            application.run(host=host, port=port, threaded=True)
            return
        err.print(
            f"serving {url} (public URL {project.config.organization.public_url})", markup=False
        )
        waitress.serve(application, host=host, port=port, threads=threads, ident="scheduler")
