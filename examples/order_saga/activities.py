"""The order saga's activities. Each effect is recorded once per idempotency key in a
ledger folder (RAFTFLOW_LEDGER, default ./ledger): creating `<key>.json` with O_EXCL
is the effect, so a retried or re-delivered attempt finds it done and returns the
same answer. Every delivery is also appended to `deliveries.jsonl`, which shows
at-least-once delivery next to exactly-once effects.

Failures, decided by the order so that a run is reproducible:
- charge_card: the gateway times out on the first attempt of every third order
  (retryable: the retry policy runs it again 50 ms later);
- ship_order: an order whose address is "nowhere" fails for good (AddressInvalid,
  non-retryable): the saga refunds the charge and releases the reservation.
"""

from __future__ import annotations

import json
import os

from raftflow import ApplicationError, activity


def _ledger() -> str:
    folder = os.environ.get("RAFTFLOW_LEDGER", "ledger")
    os.makedirs(folder, exist_ok=True)
    return folder


def _delivered() -> None:
    """Log this delivery (every attempt, failed ones included)."""
    info = activity.info()
    with open(os.path.join(_ledger(), "deliveries.jsonl"), "a") as log:
        log.write(json.dumps({"key": info.idempotency_key, "activity": info.activity, "attempt": info.attempt}) + "\n")


def _once(effect: str, answer: dict) -> dict:
    """Apply the effect for this attempt's idempotency key once; later deliveries get
    the first answer back."""
    info = activity.info()
    folder = _ledger()
    path = os.path.join(folder, info.idempotency_key.replace("/", "__") + ".json")
    record = {"key": info.idempotency_key, "effect": effect, "answer": answer}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with open(path) as f:
            return json.load(f)["answer"]
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    return answer


@activity.defn
def reserve_inventory(order: dict) -> dict:
    _delivered()
    return _once("reserve", {"reservation": f"R-{order['order_id']}", "items": order.get("items", 1)})


@activity.defn
def charge_card(data: dict) -> dict:
    _delivered()
    order = data["order"]
    if order["order_id"] % 3 == 0 and activity.info().attempt == 1:
        raise ApplicationError("payment gateway timed out", type="GatewayTimeout")
    return _once("charge", {"charge_id": f"C-{order['order_id']}", "amount": order.get("amount", 10)})


@activity.defn
def ship_order(data: dict) -> dict:
    _delivered()
    order = data["order"]
    if order.get("address") == "nowhere":
        raise ApplicationError(f"cannot ship order {order['order_id']} to {order['address']!r}",
                               type="AddressInvalid", non_retryable=True)
    return _once("ship", {"tracking": f"T-{order['order_id']}"})


@activity.defn
def refund_card(charge: dict) -> dict:
    _delivered()
    return _once("refund", {"refunded": charge["charge_id"], "amount": charge["amount"]})


@activity.defn
def release_inventory(reservation: dict) -> dict:
    _delivered()
    return _once("release", {"released": reservation["reservation"]})
