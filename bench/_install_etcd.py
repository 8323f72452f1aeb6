"""Install etcd (the reference bench/cluster_bench.py compares with) from Debian's
packages `etcd-server etcd-client`, when apt is usable here.

    .venv/bin/python bench/_install_etcd.py          # prints one line; exit 0 either way

`ensure()` returns None when an `etcd` binary is on PATH (already there, or just
installed) and otherwise one line saying why etcd cannot be had; the bench prints that
line and goes on without etcd. It installs only as root (no sudo prompt in a
benchmark) and never asks questions (DEBIAN_FRONTEND=noninteractive).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGES = ("etcd-server", "etcd-client")
INSTALL_TIMEOUT_S = 600


def binary() -> str | None:
    return shutil.which("etcd")


def ensure() -> str | None:
    """None when etcd is (now) installed, else the one-line reason it is not."""
    if binary():
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "etcd is not installed and apt-get is not here: install etcd 3.4+ and put `etcd` on PATH"
    if os.geteuid() != 0:
        return f"etcd is not installed and installing it needs root: `sudo apt-get install -y {' '.join(PACKAGES)}`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(PACKAGES)} with apt-get...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            [apt, "install", "-y", "--no-install-recommends", *PACKAGES],
            env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"`apt-get install {' '.join(PACKAGES)}` did not finish in {INSTALL_TIMEOUT_S} s"
    if done.returncode != 0 or not binary():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"`apt-get install {' '.join(PACKAGES)}` failed (exit {done.returncode}): {last}"
    return None


def main() -> int:
    reason = ensure()
    print(f"etcd: skipped: {reason}" if reason else f"etcd: {binary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
