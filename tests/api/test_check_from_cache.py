"""A check whose balance is cached is answered before the router (`CheckFromCache`), with the
same answer, the same key rules and the same errors as the route."""

from __future__ import annotations

from typing import Any

import pytest

from quotameter.api import entitlements
from support import ADMIN, demo_catalog, minutes, stream

CHECK = "/v1/customers/{customer}/entitlements/{feature}/check"


@pytest.fixture
def api(client, clock):  # type: ignore[no-untyped-def]
    assert client.put("/v1/catalog", json=demo_catalog()).status_code == 200
    start = clock.now - minutes(30)
    r = client.post("/v1/events", json=media("ann", start, start + minutes(20)))
    assert r.status_code == 200, r.text
    return client


def media(user: str, start: Any, end: Any) -> list[dict[str, Any]]:
    return stream("media.activity", "acme", start, end, user=user, stream=f"{user}/mic", kind="mic")


def route_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the route record each check it answers: a check it does not see was answered
    from the cache."""
    seen: list[str] = []
    read = entitlements._read_balance

    async def recording(svc: Any, customer: str, feature: str, at: str | None) -> Any:
        seen.append(customer)
        return await read(svc, customer, feature, at)

    monkeypatch.setattr(entitlements, "_read_balance", recording)
    return seen


def test_a_cached_balance_is_answered_before_the_route_with_the_same_answer(
    api, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    seen = route_only(monkeypatch)
    path = CHECK.format(customer="acme", feature="media")
    first = api.post(path, json={"amount": 5})
    second = api.post(path, json={"amount": 5})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["content-type"] == first.headers["content-type"]
    assert seen == ["acme"]  # the first computed the balance; the second was a hit
    assert api.post(path, json={"amount": 10**9}).json()["allowed"] is False
    assert seen == ["acme"]


def test_new_usage_goes_to_the_route_again(api, clock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = route_only(monkeypatch)
    path = CHECK.format(customer="acme", feature="media")
    before = api.post(path, json={"amount": 1}).json()
    api.post(path, json={"amount": 1})
    more = media("bob", clock.now - minutes(10), clock.now - minutes(5))
    assert api.post("/v1/events", json=more).json()["accepted"] == len(more)
    after = api.post(path, json={"amount": 1}).json()
    assert seen == ["acme", "acme"]
    assert float(after["usage"]) > float(before["usage"])


def test_a_key_of_another_customer_is_refused_also_when_cached(api) -> None:  # type: ignore[no-untyped-def]
    path = CHECK.format(customer="acme", feature="media")
    assert api.post(path, json={"amount": 1}).status_code == 200  # cached now
    made = api.post("/v1/keys", json={"role": "customer", "customer": "docs", "label": "docs"})
    other = {"Authorization": f"Bearer {made.json()['key']}"}
    refused = api.post(path, json={"amount": 1}, headers=other)
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("customer: this key reads customer 'docs' only")
    ingest = api.post("/v1/keys", json={"role": "ingest", "label": "ingest"}).json()["key"]
    r = api.post(path, json={"amount": 1}, headers={"Authorization": f"Bearer {ingest}"})
    assert r.status_code == 403
    assert (
        api.post(path, json={"amount": 1}, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"amount": -1}', 422, "amount: "),
        (b'{"amount": 1, "extra": 2}', 422, "extra: "),
        (b'{"at": "2026-03-10T12:00:00Z"}', 422, "amount: "),
        (b'{"amount": 1, "at": "yesterday"}', 422, "at: "),
        (b'{"amount": ', 400, "body: not valid JSON"),
        (b"[1]", 422, ""),
    ],
)
def test_a_body_the_route_refuses_is_refused_the_same_when_cached(
    api, body: bytes, status: int, error: str
) -> None:  # type: ignore[no-untyped-def]
    path = CHECK.format(customer="acme", feature="media")
    assert api.post(path, json={"amount": 1}).status_code == 200  # cached now
    r = api.post(path, content=body, headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith(error)


def test_an_unknown_feature_or_customer_is_the_routes_404(api) -> None:  # type: ignore[no-untyped-def]
    cached = api.post(CHECK.format(customer="acme", feature="media"), json={"amount": 1})
    assert cached.status_code == 200
    r = api.post(CHECK.format(customer="acme", feature="nope"), json={"amount": 1})
    assert r.status_code == 404 and r.json()["error"].startswith("feature: ")
    r = api.post(CHECK.format(customer="nobody", feature="media"), json={"amount": 1})
    assert r.status_code == 404 and r.json()["error"].startswith("customer: ")


def test_a_check_at_an_instant_answers_for_that_instant(api, clock) -> None:  # type: ignore[no-untyped-def]
    path = CHECK.format(customer="acme", feature="media")
    earlier = (clock.now - minutes(25)).isoformat()
    a = api.post(path, json={"amount": 1, "at": earlier}).json()
    b = api.post(path, json={"amount": 1}).json()
    assert a["at"] != b["at"] and float(a["usage"]) < float(b["usage"])
    assert api.post(path, json={"amount": 1, "at": earlier}).json() == a
