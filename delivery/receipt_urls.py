"""The per-notice receipt report's URLs, under /audit/ where auditors look for them.

config/urls.py includes this module at "audit/" beside audit.urls (which imports nothing of
delivery); the namespace is "receipts".
"""

from __future__ import annotations

from django.urls import URLPattern, path

from delivery import receipt_views

app_name = "receipts"

urlpatterns: list[URLPattern] = [
    path(
        "notices/<int:notice_id>/receipts/",
        receipt_views.receipt_report_page,
        name="report",
    ),
    path(
        "notices/<int:notice_id>/receipts/export/",
        receipt_views.receipt_export,
        name="export",
    ),
]
