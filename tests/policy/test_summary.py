"""Card summaries from the manifest's template: ``${amount}`` is money, in the request's currency."""

from __future__ import annotations

import pytest

from policy.summary import render

TEMPLATE = "Refund ${amount} to {customer.name}"


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"amount": 620, "currency": "EUR", "customer": {"name": "Ana"}}, "Refund €620 to Ana"),
        ({"amount": 620, "currency": "usd", "customer": {"name": "Ana"}}, "Refund $620 to Ana"),
        ({"amount": 620, "currency": "CHF", "customer": {"name": "Ana"}}, "Refund 620 CHF to Ana"),
        ({"amount": 620.0, "customer": {"name": "Ana"}}, "Refund $620 to Ana"),  # no currency: as written
        ({"customer": {"name": "Ana"}}, "Refund $? to Ana"),
    ],
)
def test_an_amount_after_a_dollar_sign_is_written_in_the_requests_currency(
    params: dict[str, object], shown: str
) -> None:
    assert render(TEMPLATE, params) == shown


def test_a_nested_amount_takes_the_currency_beside_it_and_a_masked_one_stays_masked() -> None:
    params = {"refund": {"amount": 30, "currency": "GBP"}, "currency": "EUR"}
    assert render("Pay ${refund.amount}", params) == "Pay £30"
    assert "30" not in render("Pay ${refund.amount}", params, sensitive=["refund.amount"])
