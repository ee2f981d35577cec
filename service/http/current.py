"""The service a request is for: the app's one ``FaqService`` (``create_app`` puts it there)."""

from __future__ import annotations

from flask import current_app

from ..core.faq_service import FaqService


def faq_service() -> FaqService:
    """The running service of this app."""
    return current_app.extensions["faq_service"]
