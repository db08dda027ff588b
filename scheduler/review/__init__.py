"""Review bound to the content: an occurrence that needs review fires only when enough
approvers approved exactly what it will send.

`policy` says whether an occurrence needs review, `content` renders everything it will send
into one text and its fingerprint, `approvals` records who approved which fingerprint,
`gate` is what the clock asks before firing, `holds` records occurrences held at their instant.
"""
