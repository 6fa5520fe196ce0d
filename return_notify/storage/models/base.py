"""The declarative base, the timestamp type and the delivery states every table shares."""

from __future__ import annotations

from sqlalchemy import (
    DateTime,
)
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass

TS = DateTime(timezone=True)

# Delivery states (DESIGN §5). WAITING states may be superseded by a newer milestone.
PENDING, SENDING, SENT, DELIVERED = "pending", "sending", "sent", "delivered"

RETRYING, SCHEDULED, FAILED, DEAD = "retrying", "scheduled", "failed", "dead"

SUPPRESSED, SKIPPED = "suppressed", "skipped"

CLAIMABLE = (PENDING, RETRYING, SCHEDULED)

WAITING = (RETRYING, SCHEDULED)

TERMINAL_STATES = (SENT, DELIVERED, FAILED, DEAD, SUPPRESSED, SKIPPED)

ALL_STATES = (PENDING, SENDING, SENT, DELIVERED, RETRYING, SCHEDULED, FAILED, DEAD,
              SUPPRESSED, SKIPPED)
