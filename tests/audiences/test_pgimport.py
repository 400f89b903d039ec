"""The PostgreSQL check of bulk files agrees with the Python (libphonenumber) rules it stands for."""

from __future__ import annotations

import json
import random

import pytest
from django.db import connection

from audiences.pgimport import hk_mobile_prefixes, hk_mobile_sql_pattern
from audiences.validation import normalise_hk_mobile


def _sample_numbers() -> list[str]:
    rng = random.Random(852)
    numbers = [f"{p:04d}{rng.randrange(10_000):04d}" for p in range(10_000)]  # every prefix
    numbers += [f"{rng.randrange(10**8):08d}" for _ in range(20_000)]
    numbers += ["9123456", "912345678", "9123 4567", "+85291234567", "٩١٢٣٤٥٦٧", "9123456a", ""]
    return numbers


@pytest.mark.postgres
def test_sql_mobile_check_agrees_with_phonenumbers(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the SQL mobile check runs there")
    numbers = _sample_numbers()
    prefixes = json.dumps(dict.fromkeys(hk_mobile_prefixes(), 1))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n, octet_length(n) = 8 AND translate(n, '0123456789', '') = ''"
            " AND %s::jsonb ? left(n, 4), n ~ %s FROM unnest(%s::text[]) n",
            [prefixes, hk_mobile_sql_pattern(), numbers],
        )
        rows = cursor.fetchall()
    assert len(rows) == len(numbers)
    disagreements = []
    for number, by_prefix, by_pattern in rows:
        # The SQL fast path only accepts bare 8-digit numbers; the library decides the rest.
        python = normalise_hk_mobile(number) if len(number) == 8 and number.isascii() else None
        if by_prefix != (python is not None) or by_pattern != by_prefix:
            disagreements.append((number, by_prefix, by_pattern, python))
    assert not disagreements, disagreements[:10]
    assert sum(1 for _n, ok, _p in rows if ok) > 1000  # the sample holds plenty of mobiles


def test_mobile_prefixes_come_from_the_library():
    prefixes = set(hk_mobile_prefixes())
    assert "9123" in prefixes  # 9123 xxxx is a mobile range
    assert "2123" not in prefixes  # 2xxx is fixed line
    for prefix in sorted(prefixes)[::97]:
        assert normalise_hk_mobile(prefix + "4321") == f"+852{prefix}4321"
