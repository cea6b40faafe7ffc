"""The OpenAPI document, built from the msgspec schemas of the API bodies."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from schemas.api import (
    CountResponse,
    ErrorBody,
    Health,
    NamespaceStatus,
    ScanJobList,
    ScanJobView,
    ScanRequest,
    ScanResults,
)

_NS = {"name": "ns", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ref}}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json("#/components/schemas/ErrorBody", "error") for s in statuses}


@cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the HTTP API."""
    types = [
        ScanRequest,
        CountResponse,
        ScanJobView,
        ScanJobList,
        ScanResults,
        ErrorBody,
        NamespaceStatus,
        Health,
    ]
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    ref = "#/components/schemas/"
    scans = "/v2/namespaces/{ns}/scans"
    return {
        "openapi": "3.1.0",
        "info": {"title": "hevlayer", "version": "0.1.0"},
        "paths": {
            scans: {
                "parameters": [_NS],
                "post": {
                    "summary": "Create an ID scan job (202) or return a count (200)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": ref + "ScanRequest"}}
                        },
                    },
                    "responses": {
                        "200": _json(ref + "CountResponse", "count"),
                        "202": _json(ref + "ScanJobView", "job created"),
                        **_errors(400, 404, 412, 413, 415, 422, 429, 503),
                    },
                },
                "get": {
                    "summary": "List ID scan jobs of the namespace",
                    "responses": {"200": _json(ref + "ScanJobList", "jobs"), **_errors(422)},
                },
            },
            scans + "/{id}": {
                "parameters": [_NS, _ID],
                "get": {
                    "summary": "Read one ID scan job",
                    "responses": {"200": _json(ref + "ScanJobView", "job"), **_errors(404)},
                },
                "delete": {
                    "summary": "Drop the in-memory scan job",
                    "responses": {"200": _json(ref + "ScanJobView", "job"), **_errors(404)},
                },
            },
            scans + "/{id}/results": {
                "parameters": [
                    _NS,
                    _ID,
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                ],
                "get": {
                    "summary": "Read completed scan ids, sorted by id",
                    "responses": {
                        "200": _json(ref + "ScanResults", "ids"),
                        **_errors(404, 409, 422),
                    },
                },
            },
            "/v2/namespaces/{ns}": {
                "parameters": [_NS],
                "get": {
                    "summary": "Cache state, watermark, CWT, applier lag, latest snapshot",
                    "responses": {"200": _json(ref + "NamespaceStatus", "status")},
                },
            },
            "/health": {
                "get": {"responses": {"200": _json(ref + "Health", "health")}},
            },
            "/metrics": {
                "get": {"responses": {"200": {"description": "Prometheus text format"}}},
            },
        },
        "components": {"schemas": components},
    }
