"""The public API: everything a program needs comes from `raftflow`, returns plain
typed values (no protobuf), takes durations as a timedelta or seconds, and the
README's examples run as written."""

from __future__ import annotations

import ast
import asyncio
import datetime
import importlib.metadata
import inspect
import pathlib
import re
import sys
import typing

import pytest

import raftflow
from raftflow import (
    AsyncClient,
    Client,
    Consistency,
    InvalidArgument,
    RetryPolicy,
    Worker,
    WorkflowStatus,
    activity,
    workflow,
)
from raftflow.cluster.client.workflows import AsyncWorkflows
from raftflow.testing import WorkflowEnvironment

from procnet import ProcCluster

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_public_name_imports_and_the_version_is_the_installed_one():
    for name in raftflow.__all__:
        assert getattr(raftflow, name) is not None, name
    assert raftflow.__version__ == importlib.metadata.version("raftflow")


def _types_in(annotation) -> list:
    found = [annotation]
    for arg in typing.get_args(annotation):
        found += _types_in(arg)
    return found


@pytest.mark.parametrize("cls", [AsyncClient, Client, AsyncWorkflows, Worker], ids=lambda c: c.__name__)
def test_no_protobuf_type_crosses_the_public_api(cls):
    module = sys.modules[cls.__module__]
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(member, globalns=vars(module))
        for annotation in hints.values():
            for t in _types_in(annotation):
                where = getattr(t, "__module__", "") or ""
                assert not where.startswith(("raftflow.proto", "google.protobuf")), f"{cls.__name__}.{name}: {t}"


def test_durations_are_a_timedelta_or_seconds_everywhere():
    client = AsyncClient(["127.0.0.1:1"], timeout=datetime.timedelta(milliseconds=2500), no_leader_timeout=2)
    assert (client.timeout, client.no_leader_timeout) == (2.5, 2.0)
    for bad in (-1, 0, "5", True, float("nan")):
        with pytest.raises(InvalidArgument, match="timeout="):
            AsyncClient(["127.0.0.1:1"], timeout=bad)
    assert RetryPolicy(initial_interval=datetime.timedelta(milliseconds=100)) == RetryPolicy(initial_interval=0.1)
    with pytest.raises(workflow.DefinitionError, match="whole number of milliseconds"):
        RetryPolicy(initial_interval=datetime.timedelta(microseconds=1500))
    assert workflow.timer("t", duration=datetime.timedelta(days=2)).duration_ms == 2 * 86_400_000
    step = workflow.step("a", task_queue="q", start_to_close=datetime.timedelta(seconds=5))
    assert step.timeouts.start_to_close_ms == 5000
    assert workflow.wait_signal("s", timeout=datetime.timedelta(hours=1)).timeout_ms == 3_600_000

    @activity.defn
    def noop() -> None:
        return None

    worker = Worker(object(), task_queue="q", activities=[noop], heartbeat_interval=datetime.timedelta(0),
                    poll_wait=datetime.timedelta(seconds=5))
    assert (worker.heartbeat_interval_s, worker.poll_wait_s) == (0.0, 5.0)


def test_enums_instead_of_strings():
    assert Consistency("stale") is Consistency.STALE and Consistency.STALE == "stale"
    assert WorkflowStatus("compensated") is WorkflowStatus.COMPENSATED
    client = AsyncClient(["127.0.0.1:1"])
    with pytest.raises(InvalidArgument, match="'eventual' is not one of linearizable, lease, stale"):
        asyncio.run(client.get("k", consistency="eventual"))  # refused before anything is sent


# --- the docs ------------------------------------------------------------------------------


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_import_only_from_raftflow(path):
    for block in _python_blocks(path):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in ("raftflow", "examples") or top in sys.stdlib_module_names, f"{path.name}: {module}"


def test_the_readme_activity_example_runs_as_written():
    (block,) = [b for b in _python_blocks(ROOT / "README.md") if "@activity.defn" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    charge_card = namespace["charge_card"]
    saga = workflow.define("pay", version=1, steps=[
        workflow.step("charge", activity="charge_card", task_queue="orders", input="$input",
                      retry=RetryPolicy(initial_interval=datetime.timedelta(milliseconds=100), maximum_attempts=3)),
    ])
    with WorkflowEnvironment(activities=[charge_card]) as env:
        env.register(saga)
        env.fail("charge_card", error_type="Timeout", times=1)  # attempt 1 fails; the retry charges, once
        paid = env.run("pay", input={"order": {"card": "ok", "amount": 12}})
        declined = env.run("pay", input={"order": {"card": "declined", "amount": 5}})
    assert paid.status == "completed" and paid.result == {"charged": 12}
    assert len(namespace["charges"]) == 1
    assert declined.status == "compensated" and "card declined" in declined.reason  # nothing to undo


def test_the_readme_client_example_runs_as_written(tmp_path, capsys, monkeypatch):
    (block,) = [b for b in _python_blocks(ROOT / "README.md") if "with Client(" in b]
    written = '["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]'
    assert written in block
    # Where `raftflow cluster up` puts a cluster, and run from its parent folder, as
    # the README says: the client finds the CA and the admin token with no flags.
    cluster = ProcCluster(str(tmp_path / ".raftflow"), 3)
    monkeypatch.chdir(tmp_path)
    try:
        cluster.start()
        cluster.wait_leader()
        block = block.replace(written, repr(cluster.cluster.endpoints))
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
    finally:
        cluster.close()
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "b'shipped'"
    assert " in term " in out and namespace["leader"].id in (1, 2, 3)
