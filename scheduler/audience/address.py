"""Email address syntax, normalization and the case-insensitive key used for de-duplication.

Syntax only: no DNS. The rules follow RFC 5321/5322 closely enough to catch typing and
export mistakes, while accepting internationalized (UTF-8) addresses.
"""

from __future__ import annotations

import re
from functools import lru_cache

import idna

MAX_ADDRESS = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL = 64

# RFC 5322 "atext" plus the dot; anything else needs quoting, which no real list uses.
_LOCAL_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~.")

# Fast path for the common part before '@' (plain ASCII, well formed); anything else goes
# through the checks below, which also say what is wrong.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")


def normalize_address(raw: str) -> str:
    """Strip surrounding space and lower-case the domain; the local part keeps its case."""
    text = raw.strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    return f"{local}@{domain.lower()}"


def address_key(address: str) -> str:
    """The de-duplication key: the whole address, case-insensitively."""
    return normalize_address(address).lower()


def address_problem(address: str) -> str | None:
    """Why `address` (already normalized) is not a usable address, or None when it is."""
    # Fast path: an ASCII part before '@' that is plainly well formed, and a domain found
    # good before (a list has few domains, so each is checked, IDNA included, once).
    local, at, domain = address.rpartition("@")
    if (
        at
        and len(address) <= MAX_ADDRESS
        and len(local) <= MAX_LOCAL
        and _PLAIN_LOCAL.fullmatch(local)
        and _domain_is_good(domain)
    ):
        return None
    return _address_problem(address)


@lru_cache(maxsize=4096)
def _domain_is_good(domain: str) -> bool:
    # "a@" + domain passes exactly when `domain` does: the address-wide checks (length,
    # spaces, control characters, one '@') cannot fail on "a@" when they pass on the domain.
    return _address_problem(f"a@{domain}") is None


def _address_problem(address: str) -> str | None:
    """The full check, which also says what is wrong."""
    if not address:
        return "email is empty"
    if len(address) > MAX_ADDRESS:
        return f"address is {len(address)} characters long; the limit is {MAX_ADDRESS}"
    for ch in address:
        if ch.isspace():
            return "address contains a space"
        if ord(ch) < 32 or ord(ch) == 127:
            return "address contains a control character"
    if address.count("@") != 1:
        return "address must contain exactly one '@'"
    local, _, domain = address.partition("@")
    if not local:
        return "nothing before the '@'"
    if len(local) > MAX_LOCAL:
        return f"the part before '@' is longer than {MAX_LOCAL} characters"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "the part before '@' has a misplaced dot"
    bad = next(
        (c for c in local if c.isascii() and not c.isalnum() and c not in _LOCAL_SPECIALS), None
    )
    if bad is not None:
        return f"the part before '@' contains {bad!r}"
    if not domain:
        return "nothing after the '@'"
    if "." not in domain:
        return f"domain {domain!r} has no dot"
    for label in domain.split("."):
        if not label:
            return f"domain {domain!r} has an empty label (two dots, or a dot at an end)"
        if label.startswith("-") or label.endswith("-"):
            return f"domain {domain!r} has a label starting or ending with '-'"
        if any(c.isascii() and not (c.isalnum() or c == "-") for c in label):
            return f"domain {domain!r} contains a character not allowed in host names"
    if not domain.isascii():
        try:
            idna_domain(domain)
        except ValueError as e:
            return f"domain {domain!r} cannot be written as an IDNA (xn--) name: {e}"
    return None


def idna_domain(domain: str) -> str:
    """The domain as DNS and mail servers know it: `exämple.org` -> `xn--exmple-cua.org`
    (IDNA 2008 with UTS #46 mapping). Raises ValueError when it has no such form."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise ValueError(str(e) or "not a valid internationalized domain name") from None


def needs_smtputf8(address: str) -> bool:
    """The part before '@' is not ASCII: only a server offering SMTPUTF8 can take it."""
    return not address.rpartition("@")[0].isascii()


def wire_address(address: str) -> str:
    """The address to put in RCPT TO and To: with an ASCII local part, the domain in IDNA
    form, so any server takes it; a non-ASCII local part is kept as it is (it needs
    SMTPUTF8, and with it the domain may stay UTF-8 too)."""
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii() or domain.isascii():
        return address
    try:
        return f"{local}@{idna_domain(domain)}"
    except ValueError:
        return address  # refused at import; a stored one fails with the server's words
