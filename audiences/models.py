"""Audience reference data and recipients."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Region(models.TextChoices):
    HONG_KONG_ISLAND = "HKI", _("Hong Kong Island")
    KOWLOON = "KLN", _("Kowloon")
    NEW_TERRITORIES = "NT", _("New Territories")


class District(models.Model):
    """One of the 18 District Council districts; loaded by migration, never edited in the app."""

    code = models.CharField(max_length=2, unique=True)
    eac_letter = models.CharField(max_length=1)
    name_en = models.CharField(max_length=60)
    name_zh = models.CharField(max_length=20)
    region = models.CharField(max_length=3, choices=Region.choices)
    hko_place = models.CharField(max_length=60, help_text="Place name in the Observatory's rhrread feed")

    class Meta:
        ordering = ["eac_letter"]

    def __str__(self) -> str:
        return f"{self.name_en} {self.name_zh}"
