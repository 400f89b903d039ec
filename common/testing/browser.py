"""Selenium waits that hold on every Chromium the tests meet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

# Chromium 156 may answer a question about an element of a page that has just gone with this
# inspector error instead of "stale element reference"; both mean the page was replaced.
_GONE = "does not belong to the document"


def page_left(element: Any) -> Callable[[Any], bool]:
    """A wait condition: `element`'s page has been replaced (the form was submitted)."""

    def left(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if _GONE in str(error):
                return True
            raise
        return False

    return left
