"""Page cursors: every cursor of the documented shape is a position, and positions round-trip."""

import re
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from app.repositories import pagination as cursor
from app.schemas.query import CURSOR_PATTERN

# Naive bounds, as Hypothesis wants them; every value drawn is in UTC.
moments = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001
    max_value=datetime(4253, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=500)
@given(moments, st.uuids())
def test_a_cursor_has_the_documented_shape_and_gives_its_position_back(
    moment: datetime, row_id: uuid.UUID
) -> None:
    encoded = cursor.encode(moment, row_id)

    assert re.fullmatch(CURSOR_PATTERN, encoded)
    assert cursor.decode(encoded) == (moment, row_id)


@settings(max_examples=500)
@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_shape_decodes_to_a_position(value: str) -> None:
    moment, row_id = cursor.decode(value)

    assert moment.tzinfo is UTC
    assert isinstance(row_id, uuid.UUID)
