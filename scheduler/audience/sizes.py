"""How many people a campaign's email reaches, for `scheduler plan`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from scheduler.audience.csvfile import read_csv
from scheduler.config.project import Project


@dataclass
class AudienceSizes:
    source: str
    members: dict[str, set[str]] = field(default_factory=dict)

    def recipients(self, lists: Iterable[str]) -> int:
        """Distinct addresses across the lists: someone on two lists gets one email."""
        union: set[str] = set()
        for name in lists:
            union |= self.members.get(name, set())
        return len(union)


def audience_sizes(project: Project) -> AudienceSizes:
    """Count from each list's CSV `source` (valid rows only).

    Lists without a source count as empty until subscribers are imported into the store.
    """
    org = project.config.organization
    sizes = AudienceSizes(source="the lists' CSV sources")
    for name, mlist in project.config.lists.items():
        emails: set[str] = set()
        if mlist.source:
            path = project.base_dir / mlist.source
            if path.is_file():
                result = read_csv(
                    path, languages=org.languages, default_language=org.default_language
                )
                emails = {row.email.lower() for row in result.rows}
        sizes.members[name] = emails
    return sizes
