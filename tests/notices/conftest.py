from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_audience_counts() -> Iterator[None]:
    """Audience counts are cached by department id, and ids are reused between tests."""
    cache.clear()
    yield
    cache.clear()
