"""Who has opened the App Home."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base


class HomeViewer(Base):
    """Someone who has opened the bot's App Home: only their Home tabs are worth re-publishing."""

    __tablename__ = "home_viewer"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_opened_at: Mapped[datetime]
