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
    Snapshot,
    SnapshotConfig,
    SnapshotConfigView,
    SnapshotList,
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
        Snapshot,
        SnapshotList,
        SnapshotConfig,
        SnapshotConfigView,
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
            **_snapshot_paths(ref),
            "/health": {
                "get": {"responses": {"200": _json(ref + "Health", "health")}},
            },
            "/metrics": {
                "get": {"responses": {"200": {"description": "Prometheus text format"}}},
            },
        },
        "components": {"schemas": components},
    }


def _snapshot_paths(ref: str) -> dict[str, Any]:
    snapshots = "/v2/namespaces/{ns}/snapshots"
    config_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": ref + "SnapshotConfig"}}},
    }
    return {
        snapshots: {
            "parameters": [_NS],
            "post": {
                "summary": "Build a snapshot at the current cache_warmed_through now",
                "responses": {
                    "201": _json(ref + "Snapshot", "snapshot built"),
                    **_errors(409, 422, 503),
                },
            },
            "get": {
                "summary": "List the kept snapshots, newest first",
                "responses": {"200": _json(ref + "SnapshotList", "snapshots")},
            },
        },
        snapshots + "/latest": {
            "parameters": [_NS],
            "get": {
                "summary": "Read the latest snapshot with its value counts",
                "responses": {
                    "200": _json(ref + "Snapshot", "snapshot"),
                    **_errors(404, 422),
                },
            },
        },
        snapshots + "/config": {
            "parameters": [_NS],
            "get": {
                "summary": "Read the fields and value limit snapshots use",
                "responses": {"200": _json(ref + "SnapshotConfigView", "config")},
            },
            "put": {
                "summary": "Set the fields and value limit; a change rebuilds",
                "requestBody": config_body,
                "responses": {
                    "200": _json(ref + "SnapshotConfigView", "config"),
                    **_errors(400, 415, 422),
                },
            },
        },
    }
