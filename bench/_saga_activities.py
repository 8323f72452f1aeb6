"""The order saga of bench/workflow_bench.py: the same three steps and two
compensations as examples/order_saga, as plain functions that do no I/O, so the
figures measure the engine, the log and the worker round trips, not a ledger on disk.

    reserve_inventory -> charge_card -> ship_order     (undo: refund_card, release_inventory)

An order whose input has `"fail_at_ship": true` fails at ship for good
(AddressInvalid, non-retryable) and is compensated: refund, then release. The bench
decides which orders those are, from its seed. No other failure is injected.

The Temporal side (bench/_temporal_ref.py) calls these same functions from its own
activity definitions, so both systems run identical activity code.
"""

from __future__ import annotations

from raftflow import ApplicationError, activity, workflow

TASK_QUEUE = "bench-orders"
TYPE_NAME = "bench_order_saga"
EXPECTED = {False: "completed", True: "compensated"}  # by order["fail_at_ship"]


class AddressInvalid(Exception):
    """ship_order refuses the order for good; each system maps it to its own
    non-retryable error."""


def reserve(order: dict) -> dict:
    return {"reservation": f"R-{order['order_id']}", "items": order["items"]}


def charge(data: dict) -> dict:
    return {"charge_id": f"C-{data['order']['order_id']}", "amount": data["order"]["amount"]}


def ship(data: dict) -> dict:
    order = data["order"]
    if order["fail_at_ship"]:
        raise AddressInvalid(f"cannot ship order {order['order_id']}")
    return {"tracking": f"T-{order['order_id']}"}


def refund(charge_result: dict) -> dict:
    return {"refunded": charge_result["charge_id"], "amount": charge_result["amount"]}


def release(reservation: dict) -> dict:
    return {"released": reservation["reservation"]}


# --- raftflow's activities and workflow type -----------------------------------------


@activity.defn
def reserve_inventory(order: dict) -> dict:
    return reserve(order)


@activity.defn
def charge_card(data: dict) -> dict:
    return charge(data)


@activity.defn
def ship_order(data: dict) -> dict:
    try:
        return ship(data)
    except AddressInvalid as exc:
        raise ApplicationError(str(exc), type="AddressInvalid", non_retryable=True) from None


@activity.defn
def refund_card(charge_result: dict) -> dict:
    return refund(charge_result)


@activity.defn
def release_inventory(reservation: dict) -> dict:
    return release(reservation)


RETRY = workflow.RetryPolicy(initial_interval=0.1, backoff_coefficient=2, maximum_interval=1, maximum_attempts=5)
START_TO_CLOSE_S = 5.0

SAGA = workflow.define(TYPE_NAME, version=1, steps=[
    workflow.step("reserve", activity="reserve_inventory", task_queue=TASK_QUEUE, input="$input",
                  retry=RETRY, start_to_close=START_TO_CLOSE_S,
                  compensation=workflow.compensate("release_inventory", input="$steps.reserve.result", retry=RETRY)),
    workflow.step("charge", activity="charge_card", task_queue=TASK_QUEUE,
                  input={"order": "$input", "reservation": "$steps.reserve.result"},
                  retry=RETRY, start_to_close=START_TO_CLOSE_S,
                  compensation=workflow.compensate("refund_card", input="$steps.charge.result", retry=RETRY)),
    workflow.step("ship", activity="ship_order", task_queue=TASK_QUEUE,
                  input={"order": "$input", "charge": "$steps.charge.result"},
                  retry=workflow.RetryPolicy(initial_interval=0.1, maximum_attempts=3,
                                             non_retryable_error_types=("AddressInvalid",)),
                  start_to_close=START_TO_CLOSE_S),
])
