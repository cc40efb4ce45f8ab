"""Column helpers shared by the models."""
from __future__ import annotations

import uuid as uuid_lib

from sqlalchemy.dialects.postgresql import JSONB

from athena.extensions import db
from athena.timeutil import utcnow

JSONType = db.JSON().with_variant(JSONB(), "postgresql")


def new_uuid() -> str:
    return str(uuid_lib.uuid4())


class IdMixin:
    id = db.Column(db.Integer, primary_key=True)
    uuid = db.Column(db.String(36), nullable=False, unique=True, default=new_uuid)


class TimestampMixin:
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)


class SoftDeleteMixin:
    deleted_at = db.Column(db.DateTime, nullable=True)
