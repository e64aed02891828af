"""What import-linter cannot see: every table belongs to one domain, and only that domain's
modules name it (in SQLAlchemy or in SQL text). The other rules of the house (calls run one
way, no circle, no api module touching storage) are the import-linter contracts in
pyproject.toml, run by `dev.py test` before the tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "quotameter"

OWNER = {
    "catalogs": "catalog",
    "events": "events",
    "buckets": "meters",
    "unique_values": "meters",
    "gauge_points": "meters",
    "stream_spans": "meters",
    "merged_spans": "meters",
    "stream_states": "meters",
    "seat_changes": "customers",
    "plan_changes": "customers",
    "customer_settings": "customers",
    "customer_state": "customers",
    "grants": "grants",
    "fired": "notifications",
    "notices": "notifications",
    "wakeups": "notifications",
    "watches": "notifications",
    "pending_evaluations": "notifications",
    "api_keys": "keys",
    "invoices": "invoices",
    "deliveries": "delivery",
    "signups": "catalog",
    "standings": "notifications",
    "console_secrets": "keys",
}

_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)


def _tables_named(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "quotameter.store.tables":
            found |= {a.name for a in node.names if a.name in OWNER}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {t for t in _SQL_TABLE.findall(node.value) if t in OWNER}
    return found


def crossings() -> set[tuple[str, str]]:
    out = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "store" or len(rel.parts) == 1:
            continue  # the store defines the tables; top-level modules are not domains
        domain = rel.parts[0]
        for table in _tables_named(path):
            if OWNER[table] != domain:
                out.add((str(rel), table))
    return out


def test_only_a_tables_domain_names_it() -> None:
    found = crossings()
    assert not found, f"modules naming another domain's tables (ask its service): {sorted(found)}"


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    """The scan finds a table named in SQL text as well as one imported from the store."""
    module = tmp_path / "m.py"
    module.write_text(
        "from quotameter.store.tables import grants\n"
        'Q = "SELECT count(*) FROM notices WHERE customer = :c"\n'
    )
    assert _tables_named(module) == {"grants", "notices"}
