"""The FAQ a request is for: the one its URL names (``/faqs/<name>/…``), else the default of the app's catalog."""

from __future__ import annotations

from flask import current_app, g

from ..core.catalog import FaqCatalog
from ..core.faq_service import FaqService


def catalog() -> FaqCatalog:
    """The FAQs of this app (``create_app`` puts them there)."""
    return current_app.extensions["faqs"]


def faq_service() -> FaqService:
    """The running service of the FAQ this request names (the default one for the routes without a name).

    Raises:
        NotFound: ``unknown_faq``. Forbidden: ``faq_forbidden`` (the request's API key is limited to other FAQs).
    """
    return catalog().get(g.get("faq_name"), faq_scope(), reveal=reveal_names())


def known_faq() -> None:
    """Refuse a request for a FAQ this service does not serve (the pages under ``/faqs/<name>/``: open, no key).

    Raises:
        NotFound: ``unknown_faq`` (naming the FAQs served only when the service has no API keys).
    """
    name = g.get("faq_name")
    if name is not None and name not in catalog().services:
        catalog().get(name, reveal=reveal_names())


def reveal_names() -> bool:
    """Whether an error may name the FAQs served: with API keys, only to a caller whose key was checked."""
    return not catalog().settings.key_list() or "faq_scope" in g


def faq_scope() -> frozenset[str] | None:
    """The FAQs the request's API key may use (None: every FAQ; set by ``admin.check_api_key``)."""
    return g.get("faq_scope")
