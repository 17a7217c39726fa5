"""Lease-based pipelines: one module per kind of work on `resources` rows.

procure.py (pending: choose an offer, create, recover), provision.py (provisioning: poll until
running), delete.py (deleting: delete until the vendor confirms), actions.py (stop/start/reboot),
refresh.py (running/stopped: keep the row true). base.py runs any of them.
"""
