"""The contract's get_offers document takes any vendor name (the SDK passes names through); the
server validates with the same model narrowed to its vendor ids, named as before in OpenAPI."""

from __future__ import annotations

import pydantic
import pytest

from gpusupply.contract.offers import OffersRequest, offers_request_for
from gpusupply.contract.schemas import ProcureRequest, procure_request_for
from gpusupply.settings import VENDORS

DOCUMENT = {"compute": {"gpu_type": "H100"}, "vendor": "aws"}


def test_the_contract_passes_any_vendor_name_through() -> None:
    assert OffersRequest.model_validate(DOCUMENT).vendor == "aws"
    body = ProcureRequest.model_validate({"ssh_public_key": "k", "spec": DOCUMENT})
    assert body.spec is not None and body.spec.vendor == "aws"


def test_the_server_model_names_its_vendors() -> None:
    checked = offers_request_for(VENDORS)
    with pytest.raises(pydantic.ValidationError) as refused:
        checked.model_validate(DOCUMENT)
    (error,) = refused.value.errors()
    assert error["loc"] == ("vendor",) and error["type"] == "literal_error"
    assert error["msg"] == "Input should be " + ", ".join(f"'{v}'" for v in VENDORS[:-1]) + f" or '{VENDORS[-1]}'"
    assert checked.model_validate({**DOCUMENT, "vendor": VENDORS[0]}).vendor == VENDORS[0]
    assert issubclass(checked, OffersRequest)


def test_one_class_per_vendor_list_named_as_the_contracts() -> None:
    checked = offers_request_for(VENDORS)
    assert offers_request_for(list(VENDORS)) is checked
    body = procure_request_for(VENDORS)
    assert procure_request_for(VENDORS) is body and issubclass(body, ProcureRequest)
    schema = body.model_json_schema()
    assert schema["title"] == "ProcureRequest" and schema["description"] == ProcureRequest.__doc__
    assert schema["$defs"]["OffersRequest"]["properties"]["vendor"]["anyOf"][0]["enum"] == list(VENDORS)
    assert schema["properties"]["spec"]["description"] == ProcureRequest.model_fields["spec"].description
    with pytest.raises(pydantic.ValidationError, match="spec.vendor"):
        body.model_validate({"ssh_public_key": "k", "spec": DOCUMENT})
