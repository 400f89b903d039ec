"""Swap Django's default admin site for the OTP-enforcing one."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class PortalAdminConfig(AdminConfig):
    default_site = "config.admin.PortalAdminSite"
