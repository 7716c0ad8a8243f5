"""The range of dates the platform accepts as input. Dates far from now are typing mistakes, and
near the ends of Python's range they overflow date arithmetic (a window ending on 9999-12-31 has
no end-of-day)."""

from datetime import date, datetime

from django.core.exceptions import ValidationError

EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
DATE_RANGE_TEXT = f"between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"


def validate_date_in_range(value: date | datetime) -> None:
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValidationError(f"Give a date {DATE_RANGE_TEXT}.", code="out_of_range")
