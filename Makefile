# The README's two commands: `make demo` and `make test`. Each one creates the
# virtual environment when it is missing and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Seeds for the simulation sweep in `make test` and `make soak`.
SIM_SEEDS  ?= 2000
SOAK_SEEDS ?= 100000
# Seconds of each nemesis soak run (3 and 5 real nodes) in `make soak`.
NEMESIS_S ?= 300
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo demo-sim test soak bench proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# A real 3-node cluster on 127.0.0.1: writes, a leader SIGKILLed mid-way, catch-up,
# and the checks (nothing acknowledged lost, nothing applied twice, equal state).
demo: $(STAMP)
	$(BIN)/raftflow demo

# The deterministic simulator on 5 nodes with every kind of fault, narrated.
demo-sim: $(STAMP)
	$(BIN)/raftflow sim --nodes 5 --seed 18 --steps 1000 --faults partition,crash,loss,dup,reorder --timeline

test: $(STAMP)
	RAFTFLOW_SIM_SEEDS=$(SIM_SEEDS) $(BIN)/python -m pytest -n $(JOBS) -q

soak: $(STAMP)
	$(BIN)/raftflow sim --nodes 3 --seed 0 --seeds $$(($(SOAK_SEEDS) / 2)) --steps 1000 --jobs $(JOBS) --quiet
	$(BIN)/raftflow sim --nodes 5 --seed $$(($(SOAK_SEEDS) / 2)) --seeds $$(($(SOAK_SEEDS) / 2)) --steps 1000 --jobs $(JOBS) --quiet
	$(BIN)/raftflow sim --nodes 5 --seed $(SOAK_SEEDS) --seeds $$(($(SOAK_SEEDS) / 10)) --steps 1000 --jobs $(JOBS) --quiet --hostile
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -q -n $(JOBS) tests/test_sim.py -k hypothesis
	RAFTFLOW_NEMESIS_S=$(NEMESIS_S) $(BIN)/python -m pytest -q -m soak tests/test_nemesis.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/_install_etcd.py
	$(BIN)/python bench/_install_restate.py
	$(BIN)/python bench/run_all.py $(if $(QUICK),--quick,)

# Regenerate the gRPC modules from proto/*.proto (they are committed, so installing
# needs no generator; tests/test_proto.py fails when they are out of date). They are
# compiled as raftflow/proto/*.proto, the name they install under, so the modules
# import each other as raftflow.proto.* and register under that path.
proto: $(STAMP)
	rm -rf build/proto && mkdir -p build/proto/raftflow/proto
	cp proto/*.proto build/proto/raftflow/proto/
	cd build/proto && ../../$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. raftflow/proto/*.proto
	cp build/proto/raftflow/proto/*_pb2*.py* proto/

clean:
	rm -rf $(VENV) *.egg-info .hypothesis
