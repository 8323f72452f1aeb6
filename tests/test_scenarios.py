"""Data-driven scenario tests, in the style of etcd-io/raft's interaction tests.

Each `tests/scenarios/*.txt` is a script: a command, `----`, the output it must
print, a blank line, the next command. Lines starting with `#` say the intent and
cite the rule. The commands drive a `raftnet.Network` by the Ready contract:

    add-nodes N [seed=S] [pre_vote=B] [check_quorum=B] [<Config field>=V]
              [logI=T,T*K,...] [termI=T]    # preset node I's durable log / term
    elect ID                   # setup: ID wins as if by TimeoutNow; prints status
    campaign ID                # start a (pre-)election now
    tick ID [N] | tick-all [N] # advance clocks; nothing is delivered
    propose ID DATA...         # one batch
    read-index ID CTX
    transfer FROM TO
    stabilize [ID...]          # Ready cycles and deliveries until quiet
                               # (with IDs: only those nodes, only among them)
    deliver ID                 # deliver what is queued for ID, then its Ready cycle
    drop FROM [TO]             # lose what is queued from FROM (to TO)
    isolate ID | partition 1 2 | 3 | heal
    crash ID | restart ID
    compact ID INDEX
    status [ID...] | log ID | applied [ID...]

An input command (campaign, tick, propose, ...) runs the Ready cycle of the nodes it
touched and prints what they send, `1: Kind fields -> 2, 3`. `stabilize` and
`deliver` print each message as it is delivered, `1->2,3 Kind fields` (identical
messages to several nodes on one line), or `(dropped)` when a cut link or a crashed
node loses it. Between them come events: `2 becomes follower at term 1`,
`2 commits to 3`, `1 ReadState ctx=r index=2`, `3 restores snapshot 6/1`. A
multi-tick command marks its lines `(tick N)`. Runs of lines that differ only in a
heartbeat's `seq=` and that tick number fold into one: `seq=2..11 ... (tick 1..10)`.

RAFTFLOW_REWRITE=1 rewrites every file's expected blocks with what ran; review the
diff. Otherwise the first mismatch fails with a unified diff naming the file and
the command's line.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from raftflow.raft import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RaftError,
    RequestVote,
    Role,
    TimeoutNow,
    VoteResponse,
)
from raftnet import MAX_STABILIZE_ROUNDS, Network

K = TypeVar("K")

SCENARIOS = Path(__file__).parent / "scenarios"
REWRITE_ENV = "RAFTFLOW_REWRITE"
SEPARATOR = "----"
ENTRIES_SHOWN = 3  # an AppendEntries with more entries prints the first, "...", the last
LOG_RUN_FOLDED = 4  # `log` folds a run of this many same-term entries or more


# --- the file format --------------------------------------------------------------


@dataclass
class Command:
    line_no: int  # 1-based, of the command line
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Script:
    """A scenario file: verbatim text (comments, blank lines) and commands, in order."""

    parts: list[str | Command]

    def render(self, outputs: dict[int, list[str]]) -> str:
        lines: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                lines.append(part)
            else:
                lines += [part.text, SEPARATOR, *outputs.get(part.line_no, part.expected)]
        return "\n".join(lines) + "\n"


def parse(text: str, name: str) -> Script:
    lines = text.splitlines()
    parts: list[str | Command] = []
    n = 0
    while n < len(lines):
        line = lines[n]
        if not line.strip() or line.startswith("#"):
            parts.append(line)
            n += 1
            continue
        if n + 1 >= len(lines) or lines[n + 1] != SEPARATOR:
            raise ValueError(f"{name}:{n + 1}: command {line!r} is not followed by {SEPARATOR!r}")
        command = Command(n + 1, line)
        n += 2
        while n < len(lines) and lines[n].strip():
            command.expected.append(lines[n])
            n += 1
        parts.append(command)
    return Script(parts)


# --- printing -----------------------------------------------------------------------


def show_data(data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data.hex()
    return f'"{text}"' if text.isprintable() else data.hex()


def show_entry(e: Entry) -> str:
    return f"{e.index}/{e.term} " + ("noop" if e.kind is EntryKind.NOOP else show_data(e.data))


def show_entries(entries: list[Entry]) -> str:
    shown = [show_entry(e) for e in entries]
    if len(shown) > ENTRIES_SHOWN:
        return f"[{shown[0]}, ..., {shown[-1]}] ({len(shown)} entries)"
    return "[" + ", ".join(shown) + "]"


def show_message(m: Message) -> str:
    """The message without src and dst: `Kind [flags] field=value ...`."""
    if isinstance(m, RequestVote):
        flags = " pre" * m.pre_vote + " transfer" * m.transfer
        return f"RequestVote{flags} term={m.term} last={m.last_log_index}/{m.last_log_term}"
    if isinstance(m, VoteResponse):
        flags = " pre" * m.pre_vote
        return f"VoteResponse{flags} term={m.term} " + ("granted" if m.granted else "rejected")
    if isinstance(m, AppendEntries):
        return (
            f"AppendEntries term={m.term} prev={m.prev_index}/{m.prev_term} "
            f"commit={m.commit} entries={show_entries(m.entries)}"
        )
    if isinstance(m, AppendResponse):
        if m.success:
            return f"AppendResponse term={m.term} ok index={m.index}"
        return f"AppendResponse term={m.term} reject index={m.index} hint={m.hint_index}/{m.hint_term}"
    if isinstance(m, Heartbeat):
        return f"Heartbeat term={m.term} commit={m.commit} seq={m.seq}"
    if isinstance(m, HeartbeatResponse):
        return f"HeartbeatResponse term={m.term} seq={m.seq}"
    if isinstance(m, InstallSnapshot):
        return f"InstallSnapshot term={m.term} snapshot={m.snapshot.index}/{m.snapshot.term}"
    if isinstance(m, TimeoutNow):
        return f"TimeoutNow term={m.term}"
    raise AssertionError(f"unknown message {m!r}")


def fanned_out(messages: list[Message], key: Callable[[Message], K]) -> list[tuple[K, list[Message]]]:
    """Group consecutive messages with the same `key` (which leaves out dst) to
    different destinations: one broadcast, one group."""
    groups: list[tuple[K, list[Message]]] = []
    for m in messages:
        k = key(m)
        if groups and groups[-1][0] == k and all(m.dst != g.dst for g in groups[-1][1]):
            groups[-1][1].append(m)
        else:
            groups.append((k, [m]))
    return groups


def destinations(group: list[Message], sep: str) -> str:
    return sep.join(str(m.dst) for m in group)


_COUNTERS = re.compile(r"(?<=\bseq=)\d+(?:\.\.\d+)?|(?<=\(tick )\d+(?:\.\.\d+)?(?=\))")


def fold_rounds(lines: list[str]) -> list[str]:
    """Fold consecutive lines that differ only in counters growing by one, a
    heartbeat's `seq=N` and a multi-tick command's `(tick N)`, into `N..M` ranges."""
    out: list[str] = []
    for line in lines:
        if out and _COUNTERS.search(line):
            last = out[-1]
            skeleton = _COUNTERS.sub("#", line)
            ranges = [c.split("..") for c in _COUNTERS.findall(last)]
            now = _COUNTERS.findall(line)
            if (
                skeleton == _COUNTERS.sub("#", last)
                and len(ranges) == len(now)
                and all(int(n) == int(r[-1]) + 1 for r, n in zip(ranges, now))
            ):
                folded = iter(f"{r[0]}..{n}" for r, n in zip(ranges, now))
                out[-1] = _COUNTERS.sub(lambda _: next(folded), last)
                continue
        out.append(line)
    return out


# --- the interpreter ----------------------------------------------------------------


def parse_terms(spec: str) -> list[int]:
    """`1,3*20` -> [1, 3, 3, ... (20 threes)]."""
    terms: list[int] = []
    for item in spec.split(","):
        term, _, times = item.partition("*")
        terms += [int(term)] * int(times or 1)
    return terms


def parse_value(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    return int(text)


class Scenario:
    """Runs commands against one Network, collecting each command's output lines."""

    def __init__(self) -> None:
        self.net: Network | None = None
        self.out: list[str] = []
        self.seen: dict[int, tuple[Role, int, int]] = {}  # id -> (role, term, commit) last printed

    # --- plumbing ---------------------------------------------------------------

    def run(self, text: str) -> list[str]:
        self.out = []
        name, *args = text.split()
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        if name != "add-nodes" and self.net is None:
            raise ValueError("add-nodes must come first")
        try:
            handler(*args)
        except RaftError as e:
            self.out.append(f"error: {type(e).__name__}: {e}")
        if self.net is not None:
            check_committed_logs_agree(self.net)
        return fold_rounds(self.out) or ["ok"]

    @property
    def network(self) -> Network:
        assert self.net is not None
        return self.net

    def ids(self, args: tuple[str, ...]) -> list[int]:
        return [int(a) for a in args] if args else list(self.network.ids)

    def observe(self, id: int, when: str = "") -> None:
        """Print what changed in `id`'s role, term or commit since last printed."""
        node = self.network.nodes.get(id)
        if node is None:
            return
        now = (node.role, node.term, node.log.commit)
        before = self.seen.get(id, now)
        if now[:2] != before[:2]:
            self.out.append(f"{id} becomes {node.role.value} at term {node.term}{when}")
        if now[2] > before[2]:
            self.out.append(f"{id} commits to {now[2]}{when}")
        self.seen[id] = now

    def process(self, id: int, *, print_sends: bool, when: str = "") -> None:
        """One Ready cycle for `id` (if it has one), printing what it tells the world."""
        net = self.network
        if not net.nodes[id].has_ready():
            return
        queued = len(net.queue)
        rd = net.process(id)
        if rd.snapshot is not None:
            self.out.append(f"{id} restores snapshot {rd.snapshot.index}/{rd.snapshot.term}{when}")
        for rs in rd.read_states:
            self.out.append(f"{id} ReadState ctx={rs.ctx.decode()} index={rs.index}{when}")
        for dropped in rd.reads_dropped:
            self.out.append(f"{id} ReadDropped ctx={dropped.ctx.decode()} ({dropped.reason}){when}")
        self.observe(id, when)
        if print_sends:
            for (src, shown), group in fanned_out(net.queue[queued:], key=lambda m: (m.src, show_message(m))):
                self.out.append(f"{src}: {shown} -> {destinations(group, ', ')}{when}")

    def process_all(self, *, when: str = "") -> None:
        for id in sorted(self.network.nodes):
            self.process(id, print_sends=True, when=when)

    def deliver(self, messages: list[Message]) -> None:
        """Step each message into its destination in order; print each group of
        identical messages to several nodes on one line, then what they changed."""
        net = self.network
        for (src, shown, lost), group in fanned_out(messages, key=lambda m: (m.src, show_message(m), net.lost(m))):
            self.out.append(f"{src}->{destinations(group, ',')} {shown}" + " (dropped)" * lost)
            if lost:
                continue
            for m in group:
                net.step(m)
            for m in group:
                self.observe(m.dst)

    # --- commands ---------------------------------------------------------------

    def cmd_add_nodes(self, size: str, *options: str) -> None:
        assert self.net is None, "add-nodes runs once, first"
        kwargs: dict[str, object] = {}
        logs: dict[int, list[int]] = {}
        terms: dict[int, int] = {}
        for option in options:
            key, _, value = option.partition("=")
            if m := re.fullmatch(r"log(\d+)", key):
                logs[int(m[1])] = parse_terms(value)
            elif m := re.fullmatch(r"term(\d+)", key):
                terms[int(m[1])] = int(value)
            else:
                kwargs[key] = parse_value(value)
        seed = int(kwargs.pop("seed", 0))  # type: ignore[call-overload]
        self.net = Network(int(size), seed=seed, logs=logs, terms=terms, **kwargs)
        for id in self.net.ids:
            self.observe(id)

    def cmd_elect(self, id: str) -> None:
        self.network.elect(int(id))
        for node_id in self.network.ids:
            self.observe(node_id)
        self.out.clear()  # the exchange is election.txt's business; show where it ended
        self.cmd_status()

    def cmd_campaign(self, id: str) -> None:
        self.network.nodes[int(id)].campaign()
        self.observe(int(id))
        self.process(int(id), print_sends=True)

    def cmd_tick(self, id: str, times: str = "1") -> None:
        for tick in range(1, int(times) + 1):
            when = f" (tick {tick})" if int(times) > 1 else ""
            self.network.tick(int(id))
            self.observe(int(id), when)
            self.process(int(id), print_sends=True, when=when)

    def cmd_tick_all(self, times: str = "1") -> None:
        for tick in range(1, int(times) + 1):
            when = f" (tick {tick})" if int(times) > 1 else ""
            self.network.tick_all()
            for id in sorted(self.network.nodes):
                self.observe(id, when)
            self.process_all(when=when)

    def cmd_propose(self, id: str, *payloads: str) -> None:
        index, term = self.network.propose(int(id), *(p.encode() for p in payloads))
        self.out.append(f"{id} appends at {index}/{term}")
        self.process(int(id), print_sends=True)

    def cmd_read_index(self, id: str, ctx: str) -> None:
        self.network.nodes[int(id)].read_index(ctx.encode())
        self.process(int(id), print_sends=True)

    def cmd_transfer(self, src: str, dst: str) -> None:
        self.network.nodes[int(src)].transfer_leadership(int(dst))
        self.process(int(src), print_sends=True)

    def cmd_stabilize(self, *args: str) -> None:
        net = self.network
        ids = set(self.ids(args))
        for _ in range(MAX_STABILIZE_ROUNDS):
            moved = False
            for id in sorted(ids & net.nodes.keys()):
                if net.nodes[id].has_ready():
                    self.process(id, print_sends=False)
                    moved = True
            batch = net.take(where=lambda m: m.src in ids and m.dst in ids)
            self.deliver(batch)
            if not moved and not batch:
                return
        raise AssertionError(f"the network did not settle in {MAX_STABILIZE_ROUNDS} rounds")

    def cmd_deliver(self, id: str) -> None:
        self.deliver(self.network.take(dst=int(id)))
        if int(id) in self.network.nodes:
            self.process(int(id), print_sends=True)

    def cmd_drop(self, src: str, dst: str | None = None) -> None:
        dropped = self.network.drop(src=int(src), dst=None if dst is None else int(dst))
        for shown, group in fanned_out(dropped, key=show_message):
            self.out.append(f"{src}->{destinations(group, ',')} {shown} (dropped)")

    def cmd_isolate(self, id: str) -> None:
        self.network.isolate(int(id))

    def cmd_partition(self, *args: str) -> None:
        groups = [[int(i) for i in g.split()] for g in " ".join(args).split("|")]
        net = self.network
        net.heal()
        for n, group in enumerate(groups):
            for other in groups[n + 1 :]:
                for a in group:
                    for b in other:
                        net.cut(a, b)

    def cmd_heal(self) -> None:
        self.network.heal()

    def cmd_crash(self, id: str) -> None:
        self.network.crash(int(id))
        self.seen.pop(int(id), None)

    def cmd_restart(self, id: str) -> None:
        self.network.restart(int(id))
        self.observe(int(id))
        self.cmd_status(id)

    def cmd_compact(self, id: str, index: str) -> None:
        self.network.compact(int(id), int(index))
        node = self.network.nodes[int(id)]
        self.out.append(f"{id} snapshot {node.log.snapshot_index}/{node.log.snapshot_term}")

    def cmd_status(self, *args: str) -> None:
        net = self.network
        for id in self.ids(args):
            node = net.nodes.get(id)
            if node is None:
                self.out.append(f"{id}: down")
                continue
            s = node.status()
            line = f"{id}: {s.role.value} term={s.term}"
            if s.role is not Role.LEADER:
                line += f" leader={s.leader or 'none'} vote={s.vote or 'none'}"
            line += f" commit={s.commit} applied={s.applied} last={s.last_index}"
            if s.role is Role.LEADER:
                line += " match=" + ",".join(f"{v}:{pr.match}" for v, pr in sorted(node.progress.items()))
            if s.snapshot_index:
                line += f" snapshot={s.snapshot_index}"
            self.out.append(line)

    def cmd_applied(self, *args: str) -> None:
        """What each state machine applied: its NORMAL payloads, in order."""
        for id in self.ids(args):
            applied = self.network.applied.get(id)
            shown = "down" if applied is None else " ".join(show_data(d) for d in applied) or "nothing"
            self.out.append(f"{id}: {shown}")

    def cmd_log(self, id: str) -> None:
        log = self.network.nodes[int(id)].log
        if log.snapshot_index:
            self.out.append(f"snapshot {log.snapshot_index}/{log.snapshot_term}")
        entries = log.entries
        n = 0
        while n < len(entries):
            run = n
            while run + 1 < len(entries) and entries[run + 1].term == entries[n].term:
                run += 1
            if run - n + 1 >= LOG_RUN_FOLDED:
                first, last = show_entry(entries[n]), show_entry(entries[run])
                self.out.append(f"{first} ... {last} ({run - n + 1} entries)")
            else:
                self.out += [show_entry(e) for e in entries[n : run + 1]]
            n = run + 1
        if not log.snapshot_index and not entries:
            self.out.append("empty")


def check_committed_logs_agree(net: Network) -> None:
    """State Machine Safety on the live nodes (Raft §5.4.3): wherever two nodes both
    hold an entry each has committed, it has the same term."""
    nodes = list(net.nodes.values())
    for a in nodes:
        for b in nodes:
            if a.id >= b.id:
                continue
            lo = max(a.log.first_index(), b.log.first_index())
            for index in range(lo, min(a.log.commit, b.log.commit) + 1):
                assert a.log.term(index) == b.log.term(index), (
                    f"nodes {a.id} and {b.id} committed different entries at index {index}"
                )


# --- running a file -----------------------------------------------------------------


def run_file(path: Path, *, rewrite: bool) -> None:
    """Run the scenario at `path`. With `rewrite`, store what ran as the expected
    output; otherwise fail at the first command whose output differs."""
    script = parse(path.read_text(), str(path))
    scenario = Scenario()
    outputs: dict[int, list[str]] = {}
    for part in script.parts:
        if isinstance(part, str):
            continue
        where = f"{path}:{part.line_no}: {part.text}"
        try:
            actual = scenario.run(part.text)
        except Exception as e:
            raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e
        outputs[part.line_no] = actual
        if not rewrite and actual != part.expected:
            diff = "\n".join(
                difflib.unified_diff(part.expected, actual, "expected", "actual", lineterm="")
            )
            replay = f"tests/test_scenarios.py::test_scenario[{path.stem}]"
            raise AssertionError(
                f"{where}\noutput differs (replay: pytest '{replay}'; to accept it, "
                f"rerun with {REWRITE_ENV}=1 and review the diff):\n{diff}"
            )
    if rewrite:
        rendered = script.render(outputs)
        if rendered != path.read_text():
            path.write_text(rendered)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    run_file(path, rewrite=os.environ.get(REWRITE_ENV) == "1")


# --- the runner itself ----------------------------------------------------------------

SMALL = """\
# Raft §5.2: one node campaigns and wins.
add-nodes 3 pre_vote=false check_quorum=false
----
ok

campaign 1
----
1 becomes candidate at term 1
1: RequestVote term=1 last=0/0 -> 2, 3

status 1
----
1: leader term=7 commit=0 applied=0 last=0
"""


def test_a_wrong_expectation_fails_with_a_diff_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "wrong.txt"
    path.write_text(SMALL)
    with pytest.raises(AssertionError) as failure:
        run_file(path, rewrite=False)
    message = str(failure.value)
    assert f"{path}:11: status 1" in message
    assert "-1: leader term=7 commit=0 applied=0 last=0" in message
    assert "+1: candidate term=1 leader=none vote=1 commit=0 applied=0 last=0" in message
    assert path.read_text() == SMALL, "a failing run leaves the file alone"


def test_rewrite_replaces_only_the_expected_blocks(tmp_path: Path) -> None:
    path = tmp_path / "wrong.txt"
    path.write_text(SMALL)
    run_file(path, rewrite=True)
    expected = SMALL.replace(
        "1: leader term=7 commit=0 applied=0 last=0",
        "1: candidate term=1 leader=none vote=1 commit=0 applied=0 last=0",
    )
    assert path.read_text() == expected
    run_file(path, rewrite=False)


def test_a_failing_command_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("add-nodes 3\n----\nok\n\nfly 1\n----\nok\n")
    with pytest.raises(AssertionError, match=re.escape(f"{path}:5: fly 1: ValueError: unknown command 'fly'")):
        run_file(path, rewrite=False)


def test_heartbeat_and_tick_counters_fold_and_nothing_else_does() -> None:
    lines = [
        "1: Heartbeat term=1 commit=1 seq=2 -> 2, 3 (tick 1)",
        "1: Heartbeat term=1 commit=1 seq=3 -> 2, 3 (tick 2)",
        "1: Heartbeat term=1 commit=1 seq=4 -> 2, 3 (tick 3)",
        "1 becomes follower at term 1 (tick 4)",
        "1->2 Heartbeat term=1 commit=1 seq=6 (dropped)",
        "1->2 Heartbeat term=1 commit=1 seq=7 (dropped)",
        "1->2 Heartbeat term=1 commit=2 seq=8 (dropped)",
        "3: RequestVote pre term=2 last=1/1 -> 1, 2 (tick 15)",
        "3: RequestVote pre term=2 last=1/1 -> 1, 2 (tick 30)",
        "2->1 AppendResponse term=1 ok index=2",
        "3->1 AppendResponse term=1 ok index=2",
    ]
    assert fold_rounds(lines) == [
        "1: Heartbeat term=1 commit=1 seq=2..4 -> 2, 3 (tick 1..3)",
        "1 becomes follower at term 1 (tick 4)",
        "1->2 Heartbeat term=1 commit=1 seq=6..7 (dropped)",
        "1->2 Heartbeat term=1 commit=2 seq=8 (dropped)",
        "3: RequestVote pre term=2 last=1/1 -> 1, 2 (tick 15)",
        "3: RequestVote pre term=2 last=1/1 -> 1, 2 (tick 30)",
        "2->1 AppendResponse term=1 ok index=2",
        "3->1 AppendResponse term=1 ok index=2",
    ]
