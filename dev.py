#!/usr/bin/env python3
"""Set up and run quotameter with nothing but Python: `python3 dev.py demo|serve|test [args…]`.

Creates .venv next to this file on first use, installs the package into it (with the test
tools for `test`), and runs the command: `demo` and `serve` in the current directory (where
their SQLite file goes), `test` in the repository. Safe to run again: installing is skipped
when up to date.
"""

from __future__ import annotations

import hashlib
import os
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
    covering = [stamp] if extra else [stamp, VENV / ".installed[test]"]  # the test install has it all
    if any(s.exists() and s.read_text() == digest for s in covering):
        return
    print(f"dev.py: installing quotameter{extra} into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}{extra}"], check=True)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "demo"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        _install("[test]")
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)
    _install("")
    program = [str(BIN / "quotameter"), command, *rest]
    if os.name == "posix":  # become the server: signals (Ctrl+C, SIGTERM) reach it directly
        os.execv(program[0], program)
    return subprocess.call(program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
