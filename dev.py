#!/usr/bin/env python3
"""Set up and run quotameter with nothing but Python: `python3 dev.py demo|serve|test [args…]`.

Creates .venv next to this file on first use, installs the package into it (with the test
tools for `test`, and Debian's Chromium for the browser tests where it may), and runs the
command: `demo` and `serve` in the current directory (where their SQLite file goes), `test`
in the repository, after the gates (ruff check, ruff format --check, mypy, lint-imports).
Safe to run again: installing is skipped when up to date.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _install(extra: str) -> None:
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed{extra or '-base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    covering = (
        [stamp] if extra else [stamp, VENV / ".installed[test]"]
    )  # the test install has it all
    if any(s.exists() and s.read_text() == digest for s in covering):
        return
    print(f"dev.py: installing quotameter{extra} into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}{extra}"], check=True)
    stamp.write_text(digest)


def _chromium() -> None:
    """The browser tests drive Debian's Chromium: install it where this may (root, apt-get).
    Elsewhere they are skipped with the reason (and fail with CI=true)."""
    if (
        os.environ.get("QUOTAMETER_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    ):
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("dev.py: no chromium found; the browser tests will be skipped", flush=True)
        return
    print("dev.py: installing chromium with apt-get for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        if subprocess.run(step, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"dev.py: {' '.join(step)} failed; the browser tests will be skipped", flush=True)
            return


# The checks of the house, run before the tests: lint, format, types, and the import layering
# (api -> use cases -> domains -> store, no circle; the contracts are in pyproject.toml).
GATES = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),
    ("lint-imports",),
)


def _gates() -> int:
    for gate in GATES:
        print(f"dev.py: {' '.join(gate)}", flush=True)
        code = subprocess.call([str(BIN / gate[0]), *gate[1:]], cwd=ROOT)
        if code:
            print(f"dev.py: `{' '.join(gate)}` failed; fix it before the tests run", flush=True)
            return code
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "demo"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        _install("[test]")
        if code := _gates():
            return code
        _chromium()
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)
    _install("")
    program = [str(BIN / "quotameter"), command, *rest]
    if os.name == "posix":  # become the server: signals (Ctrl+C, SIGTERM) reach it directly
        os.execv(program[0], program)
    return subprocess.call(program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
