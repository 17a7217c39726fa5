"""Named crash points for the kill tests.

`GPUSUPPLY_TEST_CRASH_AT=<point>` makes the process die at that point with `os._exit(137)`, as
abruptly as a SIGKILL: no cleanup, no lease released, no transaction finished. The kill tests use
it to stop a real `gpusupply serve`/`worker` at each step of procure and delete, restart it
without the variable, and check that the work completes with no duplicate create and no leak.

Points (in the order a resource meets them):
    procure.before_create    create_attempted_at is committed; the vendor create is not sent
    procure.after_create     the vendor accepted the create; its answer is not stored
    provision.after_running  the vendor reports running; our row still says provisioning
    delete.before_vendor     the row is deleting; the vendor delete is not sent
    delete.after_vendor      the vendor delete was sent; the confirmation is not stored
    price_alert.before_commit  a price alert's firing (and its procurement) is written, not committed
    price_alert.after_commit   a price alert's firing (and its procurement) is committed
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

CRASH_ENV = "GPUSUPPLY_TEST_CRASH_AT"
CRASH_POINTS = (
    "procure.before_create",
    "procure.after_create",
    "provision.after_running",
    "delete.before_vendor",
    "delete.after_vendor",
)
# A price alert's firing (tests/e2e/test_kill_price_alerts.py): a buy-below order procures once.
ALERT_CRASH_POINTS = ("price_alert.before_commit", "price_alert.after_commit")


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        print(f"gpusupply: crashing at {name} ({CRASH_ENV})", file=sys.stderr, flush=True)
        os._exit(137)
