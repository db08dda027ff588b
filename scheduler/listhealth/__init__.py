"""List health: bounces, complaints and unsubscribes read back from the mail system, and
the subscribers' rights (erasure, export, retention).

Reports come from three places and end in one function, `events.apply`: the bounce mailbox
(`mailbox.py`, read by `scheduler mailbox`), the providers' webhooks
(`scheduler/web/provider_hooks.py`) and the web pages. Each report is recorded once in
`health_events`; a second sight of it changes nothing.
"""
