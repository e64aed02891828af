"""top-up prices get their own type

A price `{type: package, feature: F}` used to mean "the top-up blocks of F bought in the
period". `package` now prices usage in packages (`package_size`, `amount`, `free_units`);
the old meaning is `{type: topup, feature: F}`. Every stored catalog is rewritten so that it
still loads and bills the same.

Revision ID: 20261203_0013
Revises: 20261203_0012
Create Date: 2026-12-03 09:00:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "20261203_0013"
down_revision = "20261203_0012"
branch_labels = None
depends_on = None

catalogs = sa.table("catalogs", sa.column("version", sa.Integer), sa.column("document", sa.Text))


def _rewrite(document: str, old: str, new: str) -> str | None:
    doc = json.loads(document)
    changed = False
    for plan in (doc.get("plans") or {}).values():
        for price in plan.get("prices") or []:
            if price.get("type") == old and (old == "topup" or "package_size" not in price):
                price["type"] = new
                changed = True
    return json.dumps(doc) if changed else None


def _each(old: str, new: str) -> None:
    conn = op.get_bind()
    for version, document in conn.execute(sa.select(catalogs.c.version, catalogs.c.document)):
        rewritten = _rewrite(document, old, new)
        if rewritten is not None:
            conn.execute(
                catalogs.update().where(catalogs.c.version == version).values(document=rewritten)
            )


def upgrade() -> None:
    _each("package", "topup")


def downgrade() -> None:
    _each("topup", "package")
