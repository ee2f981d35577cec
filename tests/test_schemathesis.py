"""Property-based API testing: schemathesis generates requests from the OpenAPI document and sends them to a real
server on 127.0.0.1 (small index, fake embedder); no server error, and every response conforms to the document."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from service.http.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
# Derandomised: the same examples every run, so that CI never fails on a draw the last run did not make.
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_description(case, live_url):
    case.call_and_validate(base_url=live_url)
