"""Machine endpoints under /api/ (signed by the caller, no staff session)."""

from __future__ import annotations

from django.urls import path

from integrations import api_views

app_name = "api"

urlpatterns = [
    path("triggers/<slug:integration>/", api_views.trigger_webhook, name="trigger"),
    path(
        "triggers/<slug:integration>/status/<uuid:trigger_id>/",
        api_views.trigger_status,
        name="trigger-status",
    ),
    path("cap/<slug:integration>/", api_views.cap_alert, name="cap"),
]
