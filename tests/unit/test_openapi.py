"""The OpenAPI document describes every route the daemon serves, and nothing else."""
from __future__ import annotations

from basewatch.http.app import create_app
from basewatch.http.openapi import openapi_document
from basewatch.http.source_webhooks import add_source_webhooks
from basewatch.http.webhooks import add_registry_webhook
from basewatch.metrics import Metrics


async def _nothing(*args):
    return {}


def test_document_matches_the_routes():
    app = create_app(_nothing, object(), "token", Metrics(), _nothing)
    add_registry_webhook(app, "token", _nothing)
    add_source_webhooks(app, object())
    served = {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
              if route.method != "HEAD"}
    document = openapi_document()
    described = {(method, path) for path, operations in document["paths"].items()
                 for method in operations}
    assert described == served


def test_document_is_openapi_3_1_with_bearer_auth():
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert "context" in document["components"]["schemas"]["Task"]["properties"]


def test_document_validates_as_openapi_3_1():
    # What a real client's code generator checks first: every response has its description,
    # every $ref resolves from the document's root (pydantic's nested models included).
    from openapi_spec_validator import validate

    validate(openapi_document())
