"""The gpusupply Python SDK: `GpuSupply` (blocking) and `AsyncGpuSupply` (asyncio).

    from gpusupply.client import GpuSupply

    with GpuSupply("http://127.0.0.1:8080", api_key="gsk_...") as gs:
        offer = gs.get_offers("H100", max_price_per_gpu_hour=3).offers[0]
        rid = gs.procure(offer.offer_id, ssh_public_key=open("id_ed25519.pub").read()).resource_ids[0]
        print(gs.wait_ready(rid).access.ssh_command)
        gs.delete_resource(rid)
        gs.wait_deleted(rid)

See docs/sdk.md.
"""

from gpusupply.client.client import DEFAULT_URL, AsyncGpuSupply, GpuSupply
from gpusupply.client.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ClientError,
    ConflictError,
    GoneError,
    GpuSupplyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResourceFailedError,
    ServerError,
    ServiceUnavailableError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from gpusupply.client.flows import RetryPolicy, WaitPolicy

__all__ = [
    "DEFAULT_URL",
    "ApiConnectionError",
    "ApiError",
    "AsyncGpuSupply",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ClientError",
    "ConflictError",
    "GoneError",
    "GpuSupply",
    "GpuSupplyError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResourceFailedError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "UnexpectedResponseError",
    "WaitPolicy",
    "WaitTimeoutError",
]
