"""Prometheus metrics, declared once here and updated where the work happens."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

VENDOR_REQUESTS = Counter(
    "gpusupply_vendor_requests_total", "Vendor API requests by outcome", ["vendor", "endpoint", "outcome"]
)
VENDOR_LATENCY = Histogram(
    "gpusupply_vendor_request_seconds",
    "Vendor API request latency",
    ["vendor", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
VENDOR_RATE_LIMIT_WAIT = Counter(
    "gpusupply_vendor_rate_limit_wait_seconds_total",
    "Seconds spent waiting for vendor rate limits: pacing before calls and backing off after a 429",
    ["vendor"],
)
VENDOR_PACING_REBOOKED = Counter(
    "gpusupply_vendor_pacing_rebooked_total",
    "Shared rate-limit slots given up because the caller woke too late to use them, and booked again",
    ["vendor"],
)
VENDOR_RATE_LIMITED = Counter("gpusupply_vendor_429_total", "429 answers received from vendors", ["vendor"])
VENDOR_DEGRADED = Gauge("gpusupply_vendor_degraded", "1 when the vendor's last listing failed", ["vendor"])
RESOURCES_BY_STATUS = Gauge("gpusupply_resources", "Resources by status", ["status"])
PROCUREMENT_ATTEMPTS = Counter(
    "gpusupply_procurement_attempts_total", "Vendor create attempts by outcome", ["vendor", "outcome"]
)
PROCUREMENT_FAILOVERS = Counter("gpusupply_procurement_failovers_total", "Failovers to the next offer", ["vendor"])
DELETION_RETRIES = Counter("gpusupply_deletion_retries_total", "Delete calls that had to be repeated", ["vendor"])
FOREIGN_INSTANCES = Gauge(
    "gpusupply_foreign_instances", "Instances another gpusupply installation made on this vendor account (left alone)", ["vendor"]
)
ORPHANS_FOUND = Counter("gpusupply_orphans_found_total", "Vendor instances with our marker and no live resource", ["vendor"])
ORPHANS_TERMINATED = Counter("gpusupply_orphans_terminated_total", "Orphans deleted by the reconciler", ["vendor"])
OFFER_CACHE_AGE = Gauge("gpusupply_offer_cache_age_seconds", "Age of the offer catalog per vendor", ["vendor"])
LEASE_TAKEOVERS = Counter("gpusupply_lease_takeovers_total", "Work taken over from an expired lease", ["pipeline"])
HTTP_REQUESTS = Counter(
    "gpusupply_http_requests_total", "HTTP requests served, by route template and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "gpusupply_http_request_seconds",
    "HTTP request latency by route template (until the answer is sent)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
