"""A client of the snapshot route, for `hevlayer snapshot`."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class SnapshotRequestError(RuntimeError):
    """The server could not be reached or did not build the snapshot."""


def request_snapshot(base_url: str, namespace: str, timeout_s: float) -> str:
    """POST /v2/namespaces/{namespace}/snapshots and return the response body.

    Raises SnapshotRequestError with the server's error message, or with the
    reason the server was not reached.
    """
    quoted = urllib.parse.quote(namespace, safe="")
    url = f"{base_url.rstrip('/')}/v2/namespaces/{quoted}/snapshots"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise SnapshotRequestError(
            f"{url} returned HTTP {exc.code}: {_error_message(exc)}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise SnapshotRequestError(
                f"{url} timed out after {timeout_s:g}s; a large namespace may need "
                "a longer --timeout"
            ) from None
        raise SnapshotRequestError(
            f"could not reach hevlayer at {base_url} ({reason}); start it with "
            "`hevlayer serve` or pass --url"
        ) from None


def _error_message(error: urllib.error.HTTPError) -> str:
    """Return the `message` of the API's JSON error body, or the raw body."""
    raw = error.read().decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        return raw or str(error.reason)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{body.get('error')}: {body['message']}"
    return raw
