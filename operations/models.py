"""A department's data-retention setting (PDPO data protection principle 2)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

DEFAULT_LOCATION_DAYS = 7
DEFAULT_PERSON_ROWS_DAYS = 90


class RetentionPolicy(models.Model):
    """How long a department keeps per-person delivery data; without a row, the defaults."""

    department = models.OneToOneField(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="retention_policy",
        verbose_name=_("department"),
    )
    location_days = models.PositiveSmallIntegerField(
        _("keep drill locations (days)"),
        default=DEFAULT_LOCATION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text=_("A confirmation's location is removed this many days after it was given."),
    )
    person_rows_days = models.PositiveSmallIntegerField(
        _("keep per-person delivery rows (days)"),
        default=DEFAULT_PERSON_ROWS_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text=_(
            "After this many days a notice's per-person rows keep only what its counts need: "
            "no user id, no link to the recipient, read and confirmation times to the day."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("retention policy")
        verbose_name_plural = _("retention policies")

    def __str__(self) -> str:
        return f"{self.department.code}: {self.location_days} / {self.person_rows_days} days"
