"""Wait until the restarted service is healthy and runs the expected model.

Healthy means, from ``/healthz``: HTTP 200, the model's manifest SHA-256 is
the new release's, frames advance between two reads, and the model has run
(``inferences`` > 0; the service's warm-up inference counts, since a camera
may show no face during the check). Silence (no answer) is a failure once the
deadline passes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass
class HealthResult:
    ok: bool
    reason: str
    last: Optional[Dict[str, Any]] = None
    seconds: float = 0.0


def read_health(url: str, timeout_s: float = 2.0) -> tuple:
    """(HTTP status or None, parsed JSON or None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 (http URL from agent.toml)
            return r.status, json.loads(r.read().decode("utf-8")), ""
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read().decode("utf-8"))
        except ValueError:
            body = None
        return e.code, body, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, None, str(getattr(e, "reason", e))


def wait_healthy(url: str, manifest_sha256: str, timeout_s: float = 60.0, poll_s: float = 0.5) -> HealthResult:
    t0 = time.monotonic()
    first_frames: Optional[int] = None
    reason = "no answer"
    last: Optional[Dict[str, Any]] = None
    while True:
        status, body, err = read_health(url, timeout_s=min(2.0, timeout_s))
        if body is not None:
            last = body
        if status is None:
            reason = f"no answer from {url} ({err})"
        elif status != 200 or body is None:
            reason = f"{url} answered {status} ({(body or {}).get('status', err)})"
        else:
            model = body.get("model") or {}
            frames = int(body.get("frames", 0))
            if model.get("manifest_sha256") != manifest_sha256:
                reason = (
                    f"the service runs model {str(model.get('manifest_sha256', 'unknown'))[:12]}, "
                    f"not the new {manifest_sha256[:12]}"
                )
                first_frames = None
            elif int(body.get("inferences", 0)) < 1:
                reason = "the service has not run the model yet"
            elif first_frames is None:
                first_frames = frames
                reason = "waiting for frames to advance"
            elif frames > first_frames:
                return HealthResult(True, "healthy", body, round(time.monotonic() - t0, 3))
            else:
                reason = f"frames do not advance ({frames})"
        if time.monotonic() - t0 >= timeout_s:
            return HealthResult(
                False, f"not healthy after {timeout_s:g} s: {reason}", last, round(time.monotonic() - t0, 3)
            )
        time.sleep(poll_s)


__all__ = ["HealthResult", "read_health", "wait_healthy"]
