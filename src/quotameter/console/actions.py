"""Admin actions on one organization: top-up, plan, seats, credit (each confirmed first)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from quotameter.console.web import Session

router = APIRouter(include_in_schema=False)


def panel(request: Request, customer: str, session: Session) -> dict[str, Any]:
    """What templates/actions.html needs to draw the action forms (admins only)."""
    return {}
