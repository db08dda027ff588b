"""A small alliance with one chapter, for the chapter tests: the US chapter joins May Day."""

from __future__ import annotations

CHAPTERS_YAML = """\
organization:
  name: {en: Test Alliance, es: Alianza de Prueba}
  website: https://example.org
  postal_address: Rue du Test 1, 1000 Brussels, Belgium
  timezone: Europe/Brussels
  languages: [en, es]
  public_url: https://lists.example.org
  unsubscribe_mailto: unsubscribe@example.org
chapters:
  usa:
    name: {en: Workers United USA, es: Trabajadores Unidos EE. UU.}
    website: https://usa.example.org
    postal_address: 200 W Cermak Rd, Chicago, IL 60616, USA
    unsubscribe_mailto: unsubscribe@usa.example.org
    timezone: America/Chicago
    languages: [en, es]
    sender: usa
    accent: "#1f4e79"
    campaigns:
      may-day:
        joins: may-day
        time: "10:00"
        statement: may-day
        audience: [usa-members]
        steps:
          statement:
            channels: [email]
            template: statement
senders:
  org: {name: Test Alliance, address: news@example.org}
  usa: {name: Workers United USA, address: news@usa.example.org}
lists:
  members: {name: {en: Members, es: Miembros}, source: members.csv, public: true}
  usa-members:
    chapter: usa
    name: {en: US members, es: Miembros en EE. UU.}
    public: true
channels:
  email: {type: smtp, url: "file:outbox", sender: org, shared: true}
  mastodon-usa:
    type: mastodon
    chapter: usa
    instance: https://social.example.org
    token: "${MASTODON_USA_TOKEN}"
campaigns:
  may-day:
    name: {en: May Day, es: Primero de Mayo}
    date: "05-01"
    time: "09:00"
    statement: may-day
    audience: [members]
    steps:
      statement:
        channels: [email]
        template: statement
"""
