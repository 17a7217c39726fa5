"""The layer below both the services (use cases) and the engine (background work): what both
need, so that neither imports the other (docs/architecture.md). Recording a status change and
its event, cost arithmetic, the budget guardrails, the webhook rules and outbox, the offer catalog
and its index, the engine's wake-up hint and the job lease every background job takes."""
