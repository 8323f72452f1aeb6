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
    protoc = pytest.importorskip("grpc_tools.protoc")
    (tmp_path / "proto").mkdir()
    for proto in PROTOS:
        shutil.copy(proto, tmp_path / "proto" / proto.name)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main(args + [str(tmp_path / "proto" / p.name) for p in PROTOS]) == 0
    stale = [
        generated.name
        for generated in sorted((tmp_path / "proto").glob("*_pb2*"))
        if generated.read_bytes() != (ROOT / "proto" / generated.name).read_bytes()
    ]
    assert not stale, f"proto/ modules out of date with the .proto files: {stale}; run `make proto`"
