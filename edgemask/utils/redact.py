"""One place that keeps secrets out of log lines, error messages, events and saved configs.

A camera, webhook or MQTT URL may carry a password in its user-info
(``rtsp://admin:pa/ss@cam/live``) and a webhook may carry a token in its
query (``?token=...``). :func:`redact` rewrites every URL in a text so that
neither is shown, whatever characters the password holds (``/``, ``@``,
``:``, ``%``...): the user-info is cut at the *last* ``@`` of the URL, not
at the first ``/`` as a URL parser would, because a raw ``/`` in a
password makes the parser take the rest for the path and print it.

Secrets that reach the process through the environment or a config file
are also registered (:func:`register_secret`) and replaced wherever they
appear, encoded or not. :class:`RedactingFilter` applies all of this to
every log record; the CLI installs it on its log handler.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from typing import Iterable, Set

MASK = "***"

# scheme:// then the rest of the token; a URL ends at whitespace (a raw space in a
# password is impossible to tell from the end of the URL; registered secrets cover it).
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>[^\s]+)")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|auth|api_key|apikey|key|secret|sig|signature)=)"
    r"(?P<value>[^&;#\s'\"]*)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: Set[str] = set()


def register_secret(value: str) -> None:
    """Remember ``value`` (a password or token) so :func:`redact` hides it everywhere."""
    if not value or len(value) < 3:  # a 1-2 character "secret" would mask half the log
        return
    with _lock:
        _secrets.add(value)
        _secrets.add(urllib.parse.quote(value, safe=""))
        _secrets.add(urllib.parse.quote(value))


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def _redact_url(m: re.Match) -> str:
    scheme, rest = m.group("scheme"), m.group("rest")
    # The authority ends at the first '/', '?' or '#' *after* the last '@' (if any).
    at = rest.rfind("@")
    if at > 0:
        userinfo, after = rest[:at], rest[at:]
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            rest = f"{user}:{MASK}{after}"
        # a user without a password is no secret: kept
    rest = _SECRET_QUERY.sub(lambda q: q.group("key") + MASK, rest)
    return scheme + rest


def redact(text: object, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, secret query values and known secrets replaced by ``***``.

    Args:
        text: anything; it is turned into a string.
        secrets: more values to hide besides the registered ones.
    """
    s = str(text)
    if "://" in s:
        s = _URL.sub(_redact_url, s)
    with _lock:
        known = sorted(_secrets | {v for v in secrets if v and len(v) >= 3}, key=len, reverse=True)
    for v in known:
        if v in s:
            s = s.replace(v, MASK)
    return s


def url_has_password(url: str) -> bool:
    """True when ``url`` carries a password in its user-info (any characters, raw ``/`` included)."""
    m = _URL.match(url.strip())
    if not m:
        return False
    rest = m.group("rest")
    at = rest.rfind("@")
    return at > 0 and ":" in rest[:at]


class RedactingFilter(logging.Filter):
    """A log filter that passes every record through :func:`redact` (message, arguments and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's problem, not ours
            return True
        red = redact(msg)
        if red != msg:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger)."""
    lg = logger or logging.getLogger()
    for h in lg.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())


__all__ = [
    "MASK",
    "RedactingFilter",
    "forget_secrets",
    "install_log_redaction",
    "redact",
    "register_secret",
    "url_has_password",
]
