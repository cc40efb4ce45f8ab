"""The ready-made workflows of ``examples/`` run end to end.

Each example file is created through the real API (201: it validates), triggered the way it is
meant to be triggered (webhook with ``wait=true``, ``POST /workflow-executions``, a schedule tick
fired with :func:`fire_tick`), driven through human steps with the approvals API, and run by the
real RQ worker. The only fakes are a local HTTP target (started per test on 127.0.0.1, it answers
the endpoints the examples call and records every request) and the OpenAI-compatible fake server.
Assertions are on the final output (execution ``output`` or the webhook answer) and on the
requests the target received."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from athena.services.schedules import fire_tick
from athena.timeutil import iso
from tests.nodes import API, TERMINAL, clean_rq, entries, wait_status
from tests.support.examples import WORKFLOWS, create, load, world
from tests.support.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.support.local_target import LocalTarget, target

# fixtures; clean_rq is autouse: no armed tick / timer outlives a test
__all__ = ["clean_rq", "target", "world"]


# -- helpers -----------------------------------------------------------------------------------
def secret(value: str) -> dict[str, Any]:
    return {"secret": True, "value": value}


def webhook(client, world, workflow: dict[str, Any], body: Any, wait: bool = True):
    query = "?wait=true" if wait else ""
    return client.post(f"{WORKFLOWS}/{workflow['uuid']}/webhook{query}", json=body, headers=world["headers"])


def finished(client, world, uuid: str, worker) -> dict[str, Any]:
    return wait_status(client, world["headers"], uuid, TERMINAL, worker)


def executions_of(client, world, workflow: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(f"{API}?workflow_uuid={workflow['uuid']}", headers=world["headers"])
    assert response.status_code == 200, response.json
    return response.json["data"]


# -- 1. lead enrichment ------------------------------------------------------------------------
PEOPLE = {
    "ada@bigcorp.example": {"full_name": "Ada Lovelace", "title": "CTO",
                            "company": {"name": "BigCorp", "employees": 2500, "industry": "Logistics"}},
    "bo@tiny.example": {"full_name": "Bo Small", "title": "Founder",
                        "company": {"name": "Tiny", "employees": 8, "industry": "Retail"}},
}


def test_lead_enrichment(client, worker, fake_openai: FakeOpenAI, target: LocalTarget, world):
    target.on("GET", "/v1/person", lambda hit: (200, PEOPLE[hit.query["email"]]) if hit.query.get("email") in PEOPLE
              else (404, {"error": "person not found"}))
    workflow = create(client, world, load("lead_enrichment.json"), {
        "enrich_url": f"{target.url}/v1/person", "enrich_api_key": secret("enrich-key-123")})
    intro = {"subject": "Ada, faster routing for BigCorp", "body": "Hi Ada, thanks for trying Athena..."}
    fake_openai.reply_json(intro)

    big = webhook(client, world, workflow, {"email": "ada@bigcorp.example", "name": "Ada", "plan": "pro"})
    assert big.status_code == 200, big.data
    assert big.json == {"email": "ada@bigcorp.example", "priority": "high", "tag": "sales-ready",
                        "company": "BigCorp", "employees": 2500, "intro": intro}
    [asked] = fake_openai.requests
    assert asked.response_format["json_schema"]["name"] == "intro_email"
    assert asked.response_format["json_schema"]["schema"]["required"] == ["subject", "body"]
    prompt = asked.messages[-1]["content"]
    assert "- name: Ada Lovelace\n- title: CTO\n" in prompt
    assert "- company: BigCorp (2500 employees, Logistics)\n- plan: pro" in prompt
    assert asked.messages[0]["role"] == "system" and "Ana, Account Executive" in asked.messages[0]["content"]

    small = webhook(client, world, workflow, {"email": "bo@tiny.example"})
    assert small.status_code == 200, small.data
    assert small.json == {"email": "bo@tiny.example", "priority": "low", "tag": "nurture", "company": "Tiny",
                          "employees": 8, "intro": None}

    unknown = webhook(client, world, workflow, {"email": "ghost@nowhere.example"})
    assert unknown.status_code == 200, unknown.data
    assert unknown.json == {"email": "ghost@nowhere.example", "priority": "low", "tag": "unenriched",
                            "company": None, "employees": None, "intro": None}

    assert len(fake_openai.requests) == 1  # only the big company cost an LLM call
    lookups = target.requests("GET", "/v1/person")
    assert [h.query for h in lookups] == [{"email": "ada@bigcorp.example"}, {"email": "bo@tiny.example"},
                                          {"email": "ghost@nowhere.example"}]  # a 404 is not retried
    assert {h.headers["authorization"] for h in lookups} == {"Bearer enrich-key-123"}


# -- 2. nightly report -------------------------------------------------------------------------
ORDERS = [
    {"id": "A-1", "status": "paid", "customer": "Ada", "quantity": 3, "unit_price": 19.99},
    {"id": "A-2", "status": "pending", "customer": "Bo", "quantity": 9, "unit_price": 99.0},
    {"id": "A-3", "status": "paid", "customer": "Bo", "quantity": 1, "unit_price": 120},
    {"id": "A-4", "status": "refunded", "customer": "Cy", "quantity": 1, "unit_price": 45.0},
    {"id": "A-5", "status": "paid", "customer": "Cy", "quantity": 2, "unit_price": 2.75},
]


def _latest_six_am_paris(now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo("Europe/Paris"))
    tick = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if tick > local:
        tick = (local - timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)
    return tick.astimezone(timezone.utc)


def test_nightly_report(client, worker, target: LocalTarget, world):
    target.on("GET", "/api/orders", (200, {"orders": ORDERS, "next": None}))
    target.on("POST", "/api/daily-sales", (201, {"id": "R-0601", "status": "stored"}))
    workflow = create(client, world, load("nightly_report.json"), {
        "orders_url": f"{target.url}/api/orders", "report_url": f"{target.url}/api/daily-sales",
        "shop_token": secret("shop-token-xyz")})
    trigger = next(n for n in workflow["nodes"] if n["type"] == "schedule")
    assert trigger["parameters"] == {"cron": "0 6 * * *", "timezone": "Europe/Paris"}

    tick = _latest_six_am_paris(datetime.now(timezone.utc))
    assert fire_tick(workflow["id"], int(tick.timestamp()), now=tick + timedelta(seconds=1)) == "fired"
    [execution] = executions_of(client, world, workflow)
    assert execution["mode"] == "schedule"
    data = finished(client, world, execution["uuid"], worker)
    assert data["status"] == "completed", data

    assert data["output"] == {"done": {"report_id": "R-0601", "paid_orders": 3, "revenue": 185.47}}
    [listing] = target.requests("GET", "/api/orders")
    assert listing.query == {"until": iso(tick), "hours": "24"}
    assert listing.headers["authorization"] == "Bearer shop-token-xyz"
    [report] = target.requests("POST", "/api/daily-sales")
    lines = [{"order_id": "A-1", "customer": "Ada", "quantity": 3, "unit_price": 19.99, "total": 59.97},
             {"order_id": "A-3", "customer": "Bo", "quantity": 1, "unit_price": 120, "total": 120},
             {"order_id": "A-5", "customer": "Cy", "quantity": 2, "unit_price": 2.75, "total": 5.5}]
    assert report.body == {
        "summary": {"period_end": iso(tick), "currency": "EUR", "paid_orders": 3, "units": 6, "revenue": 185.47,
                    "largest_order": lines[1]},
        "orders": lines,
    }
    assert report.headers["authorization"] == "Bearer shop-token-xyz"
    assert entries(data)["paid_orders"]["output"] == [ORDERS[0], ORDERS[2], ORDERS[4]]


# -- 3. expense approval -----------------------------------------------------------------------
def test_expense_approval(client, worker, target: LocalTarget, world):
    target.on("POST", "/erp/payments",
              lambda hit: (201, {"id": "PAY-" + hit.headers["idempotency-key"][:8], "status": "scheduled"}))
    target.on("POST", "/chat/messages", (201, {"ok": True}))
    example = load("expense_approval.json")
    urls = {"notify_url": f"{target.url}/chat/messages"}
    child_variables = {"reimburse": {"payments_url": f"{target.url}/erp/payments", "erp_token": secret("erp-456")}}
    reviewed = create(client, world, example, urls, child_variables)
    # the same workflow with a one-second review period: nobody decides, the default (rejected) applies
    impatient = create(client, world, example, {**urls, "review_timeout_seconds": 1}, child_variables)

    def submit(workflow: dict[str, Any], body: dict[str, Any]) -> str:
        ack = webhook(client, world, workflow, body)
        assert ack.status_code == 202, ack.data  # answered by the respond node, before any review
        assert ack.json == {"status": "received", "reference": ack.json["reference"]}
        return ack.json["reference"]  # the execution's uuid

    trip = {"employee": "Ada Lovelace", "email": "ada@corp.example", "amount": 1250, "currency": "EUR",
            "description": "Conference trip to Lisbon"}
    big = submit(reviewed, trip)
    lunch = submit(reviewed, {"employee": "Bo", "email": "bo@corp.example", "amount": 42.5,
                              "description": "Team lunch"})
    bogus = submit(reviewed, {"employee": "Cy", "email": "cy@corp.example", "amount": -3})
    ignored = submit(impatient, {"employee": "Di", "email": "di@corp.example", "amount": 900, "currency": "CHF",
                                 "description": "New laptop"})

    wait_status(client, world["headers"], big, "paused", worker)
    [approval] = client.get(f"{API}/{big}/approvals", headers=world["headers"]).json["data"]
    assert approval["message"] == ("Ada Lovelace asks for 1250.00 EUR: Conference trip to Lisbon. "
                                   "Approve the reimbursement?")
    decided = client.post(f"{API}/{big}/approvals/{approval['id']}/approve", json={"comment": "Enjoy Lisbon"},
                          headers=world["headers"])
    assert decided.status_code == 200, decided.json

    done = {uuid: finished(client, world, uuid, worker) for uuid in (big, lunch, bogus, ignored)}
    assert all(d["status"] == "completed" for d in done.values()), done
    assert done[big]["output"] == {"result": {"decision": "approved", "payment_id": f"PAY-{big[:8]}",
                                              "notified": True}}
    assert done[lunch]["output"] == {"result": {"decision": "approved", "payment_id": f"PAY-{lunch[:8]}",
                                                "notified": True}}
    assert done[bogus]["output"] == {"result": {"decision": "rejected", "payment_id": None, "notified": True}}
    assert done[ignored]["output"] == {"result": {"decision": "rejected", "payment_id": None, "notified": True}}
    review = entries(done[ignored])["manager_review"]["output"]
    assert review["decision"] == "rejected" and review["timed_out"] is True and review["user"] is None
    assert entries(done[big])["reimburse"]["output"] == {"receipt": {
        "payment_id": f"PAY-{big[:8]}", "status": "scheduled", "amount": 1250, "currency": "EUR"}}
    grace = entries(done[big])["grace"]["output"]
    assert grace["resumed_at"] >= grace["waited_until"]  # the notification waited for the grace period

    payments = {hit.headers["idempotency-key"]: hit for hit in target.requests("POST", "/erp/payments")}
    assert set(payments) == {big, lunch}  # nothing paid for the rejected ones
    assert payments[big].body == {"employee": "Ada Lovelace", "email": "ada@corp.example", "amount": 1250,
                                  "currency": "EUR", "reference": big,
                                  "memo": f"Conference trip to Lisbon (approved by {world['owner'].email})"}
    assert payments[lunch].body["memo"] == "Team lunch (approved by policy (under 500 EUR))"
    assert {hit.headers["authorization"] for hit in payments.values()} == {"Bearer erp-456"}

    notes = {hit.body["to"]: hit.body for hit in target.requests("POST", "/chat/messages")}
    assert notes == {
        "ada@corp.example": {"to": "ada@corp.example", "subject": "Expense approved",
                             "text": f"Your expense 'Conference trip to Lisbon' of 1250.00 EUR was approved; "
                                     f"payment PAY-{big[:8]} is on its way."},
        "bo@corp.example": {"to": "bo@corp.example", "subject": "Expense approved",
                            "text": f"Your expense 'Team lunch' of 42.50 EUR was approved; "
                                    f"payment PAY-{lunch[:8]} is on its way."},
        "cy@corp.example": {"to": "cy@corp.example", "subject": "Expense rejected",
                            "text": "Your expense could not be processed: the amount must be a positive number."},
        "di@corp.example": {"to": "di@corp.example", "subject": "Expense rejected",
                            "text": "Your expense 'New laptop' of 900.00 CHF was rejected: no decision within "
                                    "the review period."},
    }


# -- 4. support triage -------------------------------------------------------------------------
TICKETS = [
    {"id": "T-1", "customer": "acme", "plan": "pro", "subject": "Charged twice", "text": "March invoice twice."},
    {"id": "T-2", "customer": "globex", "plan": "enterprise", "subject": "API down",
     "text": "Every request returns 500."},
    {"id": "T-3", "customer": "initech", "subject": "SSO broken", "text": "Nobody on the team can log in."},
    {"id": "T-4", "customer": "hooli", "plan": "free", "subject": "Dark mode?", "text": "Any plans?"},
    {"id": "T-5", "customer": "umbrella", "plan": "pro", "subject": "???", "text": "(attachment only)"},
]
VERDICTS = {"T-1": ("billing", "normal"), "T-2": ("bug", "critical"), "T-3": ("account", "high"),
            "T-4": ("other", "low")}


def test_support_triage(client, worker, fake_openai: FakeOpenAI, target: LocalTarget, world, monkeypatch):
    record = fake_openai.take  # still records every request; the answer is chosen per ticket

    def by_ticket(request: RecordedRequest) -> Reply:
        record(request)
        ticket = re.match(r"Ticket (T-\d+) ", request.messages[-1]["content"]).group(1)
        if ticket not in VERDICTS:
            return Reply(status=400, error_message="Could not process the input")  # not retried
        category, urgency = VERDICTS[ticket]
        return Reply(text=json.dumps({"category": category, "urgency": urgency}))

    monkeypatch.setattr(fake_openai, "take", by_ticket)
    workflow = create(client, world, load("support_triage.json"))

    response = webhook(client, world, workflow, {"tickets": TICKETS})
    assert response.status_code == 200, response.data

    def routed(ticket: dict, category: str | None, urgency: str, team: str, queue: str, sla: int) -> dict:
        return {"ticket_id": ticket["id"], "subject": ticket["subject"], "category": category, "urgency": urgency,
                "team": team, "queue": queue, "sla_hours": sla}

    failed = {**routed(TICKETS[4], None, "high", "frontline", "TRIAGE", 4),
              "note": "automatic classification failed: LLM provider returned HTTP 400: Could not process the input"}
    expected = [routed(TICKETS[0], "billing", "normal", "billing", "BILLING", 24),
                routed(TICKETS[1], "bug", "critical", "engineering", "ENG-ONCALL", 8),
                routed(TICKETS[2], "account", "high", "identity", "IAM", 12),
                routed(TICKETS[3], "other", "low", "frontline", "GENERAL", 48),
                failed]
    assert response.json == {"received": 5, "urgent_count": 3, "urgent": [expected[1], expected[2], failed],
                             "routed": expected}

    asked = sorted(fake_openai.requests, key=lambda r: r.messages[-1]["content"])
    assert len(asked) == 5
    assert all(not r.stream and r.response_format["json_schema"]["name"] == "triage" for r in asked)
    assert asked[2].messages[-1]["content"] == ("Ticket T-3 from initech (plan: unknown)\n"
                                                "Subject: SSO broken\n\nNobody on the team can log in.")
    assert target.hits == []  # this example calls no HTTP API besides the LLM


# -- 5. order sync -----------------------------------------------------------------------------
ORDERS_TO_SYNC = [{"id": f"SO-100{i}", "customer": customer, "total": total, "currency": "EUR", "status": "paid"}
                  for i, (customer, total) in enumerate([("Ada", 59.97), ("Bo", 120), ("Cy", 5.5), ("Di", 310.0),
                                                         ("Ed", 18.25)], 1)]


def test_order_sync(client, worker, target: LocalTarget, world):
    target.on("GET", "/shop/orders", (200, {"orders": ORDERS_TO_SYNC}))
    ok = (200, {"updated": True})
    target.on("PUT", "/erp/orders/SO-1001", ok)
    target.on("PUT", "/erp/orders/SO-1002", [(503, {"error": "busy"}), ok])  # flaky: the retry succeeds
    target.on("PUT", "/erp/orders/SO-1003", (422, {"error": "unknown customer"}))  # 4xx: not retried
    target.on("PUT", "/erp/orders/SO-1004", ok)
    target.on("PUT", "/erp/orders/SO-1005", (500, {"error": "db down"}))  # retried, then given up
    workflow = create(client, world, load("order_sync.json"), {
        "shop_url": f"{target.url}/shop", "erp_url": f"{target.url}/erp", "erp_token": secret("erp-789")})

    started = client.post(API, json={"workflow_uuid": workflow["uuid"],
                                     "input": {"updated_since": "2026-11-01T00:00:00Z"}}, headers=world["headers"])
    assert started.status_code == 201, started.json
    data = finished(client, world, started.json["data"]["uuid"], worker)
    assert data["status"] == "completed", data

    erp = f"{target.url}/erp/orders"
    failures = [{"order_id": "SO-1003", "status": "failed",
                 "error": f'HTTP 422 Unprocessable Entity from {erp}/SO-1003: {{"error": "unknown customer"}}'},
                {"order_id": "SO-1005", "status": "failed",
                 "error": f'HTTP 500 Internal Server Error from {erp}/SO-1005: {{"error": "db down"}}'}]
    assert data["output"] == {"stats": {"total": 5, "synced": 3, "failed": 2, "failures": failures}}
    results = entries(data)["sync_each"]["output"]  # in item order, whatever finished first
    assert [(r["order_id"], r["status"]) for r in results] == [
        ("SO-1001", "synced"), ("SO-1002", "synced"), ("SO-1003", "failed"), ("SO-1004", "synced"),
        ("SO-1005", "failed")]
    assert results[1]["http_status"] == 200

    [listing] = target.requests("GET", "/shop/orders")
    assert listing.query == {"updated_since": "2026-11-01T00:00:00Z"}
    puts = target.requests("PUT")
    attempts = {o["id"]: sum(1 for h in puts if h.path == f"/erp/orders/{o['id']}") for o in ORDERS_TO_SYNC}
    assert attempts == {"SO-1001": 1, "SO-1002": 2, "SO-1003": 1, "SO-1004": 1, "SO-1005": 3}
    first = next(h for h in puts if h.path == "/erp/orders/SO-1001")
    assert first.body == {"order_id": "SO-1001", "customer": "Ada", "total": 59.97, "currency": "EUR",
                          "status": "paid"}
    assert {h.headers["authorization"] for h in puts} == {"Bearer erp-789"}
