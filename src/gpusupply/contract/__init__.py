"""The public contract of the HTTP API: the request and answer models the server validates and
documents with, and the SDK builds and parses with, so the two cannot drift apart.

`schemas.py` (errors, discovery, offers' answers, procurement, resources, health), `cost.py`
(usage, budgets, auto-delete, webhooks) and `offers.py` (the get_offers document). They import
pydantic, the standard library and `gpusupply.core` only: the SDK installs and imports them
without the server (an import-linter contract in pyproject.toml keeps it so).
"""
