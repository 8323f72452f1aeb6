"""The order saga example: `order_saga.yaml` (the workflow) and `activities.py`."""
