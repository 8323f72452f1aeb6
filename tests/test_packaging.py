"""raftflow installs under its own name only, beside packages whose top-level names
its repository folders share (proto-plus's `proto`, python-statemachine's
`statemachine`), in either install order, and all of them keep working."""

from __future__ import annotations

import configparser
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = {"raftflow": "raftflow", "raftflow.raft": "raft", "raftflow.statemachine": "statemachine",
           "raftflow.proto": "proto", "raftflow.cluster": "cluster"}
NEIGHBOURS = ["proto-plus", "python-statemachine"]

# Run in the fresh venv: each package does what its users rely on.
CHECK = r"""
import proto, statemachine
class Point(proto.Message):
    x = proto.Field(proto.INT32, number=1)
assert Point(x=3).x == 3, "proto-plus is broken"

class Light(statemachine.StateMachine):
    red = statemachine.State(initial=True)
    green = statemachine.State()
    go = red.to(green)
    stop = green.to(red)
light = Light()
light.go()
assert light.current_state.id == "green", "python-statemachine is broken"

import raftflow
from raftflow import AsyncClient, Client, Worker, activity, workflow
from raftflow.raft.sim import SimOptions, run
from raftflow.proto import client_pb2
assert client_pb2.DESCRIPTOR.name == "raftflow/proto/client.proto"
result = run(SimOptions(nodes=3, seed=1, steps=200))
assert result.ok, result
print("all three work")
"""


def test_every_package_folder_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    mapping = dict(line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines())
    assert mapping == FOLDERS
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed, f"setup.cfg packages: missing {sorted(found - listed)}, extra {sorted(listed - found)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    # Built from a copy: setuptools writes build/ beside the sources, and tests run in parallel.
    source = tmp_path_factory.mktemp("source")
    for folder in FOLDERS.values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    (built,) = out.glob("raftflow-*.whl")
    return built


def test_the_wheel_installs_nothing_but_raftflow(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {"raftflow", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops


@pytest.mark.parametrize("raftflow_first", [True, False], ids=["raftflow-first", "raftflow-last"])
def test_installs_beside_proto_plus_and_python_statemachine(wheel, tmp_path, raftflow_first):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")

    def pip(*args: str) -> None:
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
            check=True, stdin=subprocess.DEVNULL, timeout=600,
        )

    steps = [[str(wheel)], NEIGHBOURS]
    for step in steps if raftflow_first else reversed(steps):
        pip(*step)
    subprocess.run([python, "-m", "pip", "check"], check=True, timeout=120)
    done = subprocess.run([python, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "all three work" in done.stdout
    version = subprocess.run([str(venv / "bin" / "raftflow"), "--help"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
