"""What a server's own log lines may say of a request: the method and the path, nothing a client typed.

gunicorn logs a malformed request line or header as it came ("Invalid request from ip=…: Invalid HTTP request
line: 'GET /search?q=mon mail jean.dupont@… HTTP/1.1'"), and Werkzeug's development server logs every request
line with its query string: queries hold what users type (e-mail addresses, phone numbers). Both servers' loggers
pass their messages through ``scrub_request_text`` (``gunicorn_conf.ScrubbingLogger``, ``cli.serve``). No Flask and
no metrics here: gunicorn's master imports this before it forks.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..learning.redaction import EMAIL, redact_identifiers

#: What a client sent, quoted in a server's message: from the first quote after ": " or "(" to the last of its kind
#: (gunicorn's ``Invalid HTTP request line: 'GET /…'``, http.server's ``Bad request syntax ('GET /…')``).
_QUOTED = re.compile(r"""([:(]\s*)(b?(['"]))(.*)\3""", re.S)
#: A request line's method and target.
_REQUEST_LINE = re.compile(r"([A-Za-z]{1,16}) (\S+)")
#: A query string, up to the end of the URI (``?q=…``; its words may hold spaces when the request line is broken).
_QUERY_STRING = re.compile(r"\?[^'\"]*?(?=\s+HTTP/|['\"]|$)", re.S)
#: A path outside quotes (gunicorn's ``Error handling request /faq/…``).
_UNQUOTED_PATH = re.compile(r"(?<=\s)/[^\s'\"]*")
#: Words of a server's message that say it carries what a client sent.
_ABOUT_A_REQUEST = re.compile(
    r"request|header|HTTP|URI|chunk|PROXY|preface|line folding|data|bytes|client|syntax|version|method", re.I
)


def scrub_target(target: str) -> str:
    """A request target as a log may show it: its path only (no query string, no ``scheme://user@host`` of an
    absolute URL), with e-mail addresses and long numbers in it replaced."""
    path = urlsplit(target).path if "://" in target else target.split("?", 1)[0].split("#", 1)[0]
    return redact_identifiers(path or "/")


def scrub_request_text(message: str) -> str:
    """A server's log message with nothing a client sent beyond the method and the path: a quoted request line is
    cut to ``METHOD /path`` (``scrub_target``), any other quoted header or data replaced, query strings and e-mail
    addresses removed. Queries hold what users type, and a malformed request is logged by the server, not the app."""
    if not _ABOUT_A_REQUEST.search(message):
        return message

    def quoted(match: re.Match) -> str:
        line = _REQUEST_LINE.match(match.group(4))
        kept = f"{line.group(1)} {scrub_target(line.group(2))}" if line and line.group(2)[:1] in "/hH" else "<removed>"
        return f"{match.group(1)}{match.group(2)}{kept}{match.group(3)}"

    message = _QUERY_STRING.sub("?<removed>", _QUOTED.sub(quoted, message))
    message = _UNQUOTED_PATH.sub(lambda m: scrub_target(m.group(0)), message)
    return EMAIL.sub("<email>", message)
