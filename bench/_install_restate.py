"""Install the Restate server the saga bench compares with, from the npm registry.

    .venv/bin/python bench/_install_restate.py          # what `make bench` runs first

`npm install --prefix ~/.cache/raftflow-bench/restate @restatedev/restate-server@<pin>`:
npm picks the platform package holding the binary (@restatedev/restate-server-linux-x64
here). The prefix is outside the repository so nothing lands in the work tree, and the
version is pinned so runs on different days compare the same server. No CLI is needed:
bench/_restate_ref.py registers the service through the admin API. The Python side
(restate-sdk, hypercorn, aiohttp) comes with setup.cfg's `bench` extra.

Always exits 0: when npm is missing or the install fails it prints one line saying so,
and the bench then skips Restate with its own line.
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _restate_ref as ref  # noqa: E402

VERSION = os.environ.get("RESTATE_VERSION", "1.7.12")
INSTALL_TIMEOUT_S = 600


def main() -> int:
    installed = ref.find_binary()
    if installed and VERSION in ref._version():
        print(f"restate: restate-server {VERSION} already at {installed}")
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("restate: skipped: npm is not on PATH (Debian: apt-get install nodejs npm)")
        return 0
    os.makedirs(ref.INSTALL_DIR, exist_ok=True)
    command = [npm, "install", "--prefix", ref.INSTALL_DIR, "--no-audit", "--no-fund", "--loglevel", "error",
               f"@restatedev/restate-server@{VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"restate: skipped: `{' '.join(command)}` took over {INSTALL_TIMEOUT_S} s")
        return 0
    found = ref.find_binary()
    if done.returncode != 0 or found is None:
        errors = [ln for ln in done.stderr.splitlines() if ln.strip() and "complete log" not in ln]
        why = errors[0] if errors else f"no restate-server binary for {ref._platform()}"
        print(f"restate: skipped: npm install of @restatedev/restate-server@{VERSION} failed: {why}")
        return 0
    print(f"restate: restate-server {VERSION} at {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
