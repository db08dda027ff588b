"""The dashboard reviews what the clock will send: when campaigns.yaml, a statement or a
template changed on disk since the web process loaded them, the project is loaded again
(if it still validates) before a review page is shown or an approval recorded. Otherwise an
organizer could approve the old text while the clock, which reloads on change, sends the new
one (the fingerprints would differ, so it would be held, but the page would be wrong)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from scheduler.config.project import Project
from scheduler.web.pages import web_state

log = logging.getLogger(__name__)
_lock = threading.Lock()
_seen: dict[Path, tuple[tuple[str, int, int], ...]] = {}


def files_fingerprint(project: Project) -> tuple[tuple[str, int, int], ...]:
    roots = [project.path, project.statements_dir, project.templates_dir]
    found: list[tuple[str, int, int]] = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            found.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(found)


def current_project() -> Project:
    """The web state's project, reloaded first when its files changed and still validate."""
    from scheduler.validate import validate_project

    state = web_state()
    with _lock:
        now = files_fingerprint(state.project)
        before = _seen.setdefault(state.project.path, now)
        if now != before:
            _seen[state.project.path] = now
            report = validate_project(state.project.path)
            if report.ok and report.project is not None:
                state.project = report.project
                log.info("event=web_reloaded path=%s", state.project.path)
            else:
                log.error("event=web_reload_refused errors=%d", len(report.errors))
        return state.project
