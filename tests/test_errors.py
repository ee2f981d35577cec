"""The error vocabulary (``service/errors.py``): one enum of codes, each with its status and meaning, that the
documentation's table is made from and that the service actually sends."""

from __future__ import annotations

import re

from conftest import ROOT

from service.errors import HTTP_STATUS_CODES, ErrorCode, ServiceError, markdown_table


def test_the_documentation_lists_every_code_as_the_enum_says():
    assert markdown_table() in (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def _classes(base=ServiceError):
    for cls in base.__subclasses__():
        yield cls
        yield from _classes(cls)


def test_every_code_is_sent_somewhere_and_every_class_has_one():
    used = {ServiceError.code, ErrorCode.HTTP_ERROR, *HTTP_STATUS_CODES.values()}
    used |= {cls.code for cls in _classes()}
    for path in (ROOT / "service").rglob("*.py"):
        if path.name != "errors.py":
            used |= {
                ErrorCode[name] for name in re.findall(r"\bErrorCode\.([A-Z_]+)", path.read_text(encoding="utf-8"))
            }
    assert set(ErrorCode) == used, f"never sent: {set(ErrorCode) - used}"
    assert all(code.status in (0, *range(400, 600)) for code in ErrorCode)


def test_an_exception_takes_its_status_from_its_code():
    err = ServiceError("m", code=ErrorCode.CORPUS_MISMATCH)
    assert (err.status, err.to_dict()["error"]["code"]) == (409, "corpus_mismatch")
    assert ServiceError("m", code="faq_not_found").status == 404
