"""The `get_offers` document: what a search (and a procure-by-spec's `spec`) asks for.

In the contract `vendor` is any name: the SDK sends what it is given and the server, which knows
its vendors, answers an unknown one with a 422 listing them. The server validates with
`offers_request_for(its vendor ids)`, the same model with `vendor` narrowed to those names (an
enum in the OpenAPI document).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

from pydantic import ConfigDict, Field, create_model, field_validator, model_validator

from gpusupply.core.inputs import CheckedModel


class ComputeSpec(CheckedModel):
    model_config = ConfigDict(extra="forbid")

    gpu_type: str = Field(
        min_length=1, max_length=100, description="A family (`H100`) or a canonical name (`nvidia-h100-sxm5-80gb`)."
    )
    gpu_count: int = Field(
        1, ge=1, le=1024, strict=True,
        description="GPUs per offer (exact match); more than any single node has answers cluster offers (node_count x gpus_per_node).",
    )
    max_price_per_gpu_hour: float | None = Field(None, gt=0, allow_inf_nan=False, description="USD per GPU-hour.")
    contract_type: Literal["ondemand", "spot"] | None = None
    node_count: int | None = Field(
        None, ge=1, le=64, strict=True, description="Extension: exactly this many nodes (1: single machines only); divides gpu_count."
    )
    interconnect: Literal["infiniband", "any"] | None = Field(
        None, description="Extension: `infiniband` answers only clusters whose nodes share an InfiniBand fabric."
    )

    @model_validator(mode="after")
    def _nodes_divide_gpus(self) -> ComputeSpec:
        if self.node_count is not None and self.gpu_count % self.node_count:
            raise ValueError(f"gpu_count ({self.gpu_count}) must be a multiple of node_count ({self.node_count}): it counts every node's GPUs")
        return self

    @field_validator("max_price_per_gpu_hour", mode="before")
    @classmethod
    def _no_bool_price(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        return value


class OffersRequest(CheckedModel):
    """The `get_offers` document (also the `spec` of a procure-by-spec)."""

    model_config = ConfigDict(extra="forbid")

    compute: ComputeSpec
    vendor: str | None = None
    region: str | None = Field(None, description="US, EU, APAC or Other (any case).")
    network: dict[str, Any] | None = Field(None, description="Accepted for compatibility; not used for matching.")


def offers_request_for(vendor_ids: Sequence[str]) -> type[OffersRequest]:
    """`OffersRequest` with `vendor` one of `vendor_ids`: the model a server validates with.

    One class per list (cached), so every route of a server shares it and the OpenAPI document
    names it once, `OffersRequest`, as before."""
    return _offers_request_for(tuple(vendor_ids))


@cache
def _offers_request_for(vendor_ids: tuple[str, ...]) -> type[OffersRequest]:
    one_of: Any = Literal[vendor_ids]  # the ids are known at run time only
    return create_model(
        OffersRequest.__name__,
        __base__=OffersRequest,
        __doc__=OffersRequest.__doc__,
        __module__=__name__,
        vendor=(one_of | None, None),
    )
