"""The organization page's live part: the customer's in-app notices, for the page's banner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
