"""S3 requests each site served during a contender's run, from SeaweedFS's Prometheus endpoint.

`weed mini` counts every S3 request it answers in `SeaweedFS_s3_request_total{bucket, code, type}` on its
metrics port (`-metricsPort`, devstack/seaweed.py). The harness reads the counters of both sites just
before a contender starts and just after it exits (nothing else talks S3 to the stack meanwhile: bucket
creation, warm-up and the check are outside) and keeps the difference, summed over buckets, by type.

SeaweedFS's `type` is coarse, roughly the HTTP method: GET counts GetObject **and HeadObject** (and the
bucket-level GETs), PUT counts PutObject (and the other PUTs: parts, bucket creation), LIST the listings
(checked on weed 4.48: 3 HEAD + 1 GET + 2 bucket GETs gave GET 6). A site without a metrics endpoint (the
moto flavour of the cold site) gives None.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

from vault_pipeline.devstack.stack import DevStack

REQUEST_COUNTER = "SeaweedFS_s3_request_total"
SCRAPE_TIMEOUT_S = 10.0
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestCounts = dict[str, int]  # type (GET, PUT, POST, LIST, DELETE, ...) -> requests; "errors": non-2xx answers


def parse_request_counts(text: str) -> RequestCounts:
    """The S3 request counters of a Prometheus text exposition, summed over buckets and codes, by type;
    `errors` counts the answers whose code is not 2xx (a 404 HEAD, a 412 conditional write...)."""
    counts: RequestCounts = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != REQUEST_COUNTER:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        value = int(float(match["value"]))
        kind = labels.get("type", "other").upper()
        counts[kind] = counts.get(kind, 0) + value
        if not labels.get("code", "200").startswith("2"):
            counts["errors"] = counts.get("errors", 0) + value
    return counts


def site_request_counts(site: Any) -> RequestCounts | None:
    """The counters of one SeaweedFS site now, or None when it has no metrics endpoint or did not answer."""
    ports = getattr(site, "ports", None)
    metrics_port = getattr(ports, "metrics", None)
    if metrics_port is None:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            return parse_request_counts(answer.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, TimeoutError, OSError):
        return None


def request_counts(stack: DevStack) -> dict[str, RequestCounts | None]:
    return {"hot_s3": site_request_counts(stack.hot), "cold_s3": site_request_counts(stack.cold)}


def request_delta(before: dict[str, RequestCounts | None],
                  after: dict[str, RequestCounts | None]) -> dict[str, RequestCounts | None]:
    """Requests served between two readings, per site (None where either reading is missing)."""
    delta: dict[str, RequestCounts | None] = {}
    for site, first in before.items():
        last = after.get(site)
        if first is None or last is None:
            delta[site] = None
            continue
        delta[site] = {kind: last.get(kind, 0) - first.get(kind, 0) for kind in sorted(set(first) | set(last))
                       if last.get(kind, 0) != first.get(kind, 0)}
    return delta
