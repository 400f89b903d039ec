"""Delivery records: the rate governor's database store (phase 1); dispatches follow."""

from __future__ import annotations

from django.db import models


class GovernorEntry(models.Model):
    """One call (or a call's recipients) inside a sliding window of the database governor."""

    key = models.CharField(max_length=200)
    at = models.FloatField()
    amount = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["key", "at"], name="governor_entry_window_idx")]

    def __str__(self) -> str:
        return f"{self.key}@{self.at:.3f} x{self.amount}"


class GovernorCounter(models.Model):
    """A named counter (the month's metered calls), lock row or pause deadline."""

    key = models.CharField(max_length=200, unique=True)
    value = models.BigIntegerField(default=0)
    until = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
