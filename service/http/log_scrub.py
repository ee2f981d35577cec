"""What a server's own log lines may say of a request: the method and the path, nothing a client typed.

gunicorn logs a malformed request line or header as it came ("Invalid request from ip=…: Invalid HTTP request
line: 'GET /search?q=mon mail jean.dupont@… HTTP/1.1'"), and Werkzeug's development server logs every request
line with its query string: queries hold what users type (e-mail addresses, phone numbers). Both servers' loggers
pass their messages through ``scrub_request_text`` (``gunicorn_conf.ScrubbingLogger``, ``cli.serve``). No Flask and
no metrics here: gunicorn's master imports this before it forks.
"""

from __future__ import annotations

import re

#: A request line quoted at the end of a server's message (gunicorn's ``Invalid HTTP request line: 'GET /…'``).
_QUOTED = re.compile(r"""(:\s*)(b?(['"]))(.*)\3\s*$""", re.S)
_REQUEST_LINE = re.compile(r"([A-Za-z]{1,16}) (/[^?\s#]*)")
#: A query string, up to the end of the URI (``?q=…``; its words may hold spaces when the request line is broken).
_QUERY_STRING = re.compile(r"\?[^'\"]*?(?=\s+HTTP/|['\"]|$)", re.S)
#: Words of a server's message that say it carries what a client sent.
_ABOUT_A_REQUEST = re.compile(r"request|header|HTTP|URI|chunk|PROXY|preface|line folding", re.I)


def scrub_request_text(message: str) -> str:
    """A server's log message with nothing a client sent beyond the method and the path: a quoted request line is
    cut to ``METHOD /path``, any other quoted header or data replaced, query strings removed. Queries hold what
    users type (e-mail addresses, phone numbers), and a malformed request is logged by the server, not the app."""
    if not _ABOUT_A_REQUEST.search(message):
        return message

    def quoted(match: re.Match) -> str:
        line = _REQUEST_LINE.match(match.group(4))
        kept = f"{line.group(1)} {line.group(2)}" if line else "<removed>"
        return f"{match.group(1)}{match.group(2)}{kept}{match.group(3)}"

    return _QUERY_STRING.sub("?<removed>", _QUOTED.sub(quoted, message))
