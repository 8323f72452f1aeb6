"""The committed gRPC modules match the .proto files (`make proto` regenerates them)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = sorted((ROOT / "proto").glob("*.proto"))


def test_every_proto_has_committed_modules():
    assert PROTOS, "no .proto files under proto/"
    for proto in PROTOS:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (proto.parent / f"{proto.stem}{suffix}").exists(), f"run `make proto`: {proto.stem}{suffix} is missing"


def test_generated_modules_are_up_to_date(tmp_path):
    # Compiled as raftflow/proto/*.proto, the name they install under (as `make proto` does).
    protoc = pytest.importorskip("grpc_tools.protoc")
    out = tmp_path / "raftflow" / "proto"
    out.mkdir(parents=True)
    for proto in PROTOS:
        shutil.copy(proto, out / proto.name)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main(args + [str(out / p.name) for p in PROTOS]) == 0
    stale = [
        generated.name
        for generated in sorted(out.glob("*_pb2*"))
        if generated.read_bytes() != (ROOT / "proto" / generated.name).read_bytes()
    ]
    assert not stale, f"proto/ modules out of date with the .proto files: {stale}; run `make proto`"


def test_generated_modules_import_each_other_under_raftflow():
    for grpc_module in sorted((ROOT / "proto").glob("*_pb2_grpc.py")):
        text = grpc_module.read_text()
        assert "from raftflow.proto import" in text, f"{grpc_module.name} does not import under raftflow.proto"
