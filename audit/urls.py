from __future__ import annotations

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.event_list, name="event-list"),
    path("events/<int:pk>/", views.event_detail, name="event-detail"),
    path("export/", views.export, name="export-create"),
    path("export/proof/", views.export_proof, name="export-proof"),
    path("chain/", views.chain_page, name="chain"),
    path("chain/verify/", views.chain_verify_start, name="chain-verify"),
    path("chain/runs/<uuid:run_id>/", views.chain_progress, name="chain-progress"),
    path("receipts/", views.receipts_open, name="receipts-open"),
    path("exports/<uuid:export_id>/", views.export_detail, name="export-detail"),
    path("exports/<uuid:export_id>/progress/", views.export_progress, name="export-progress"),
    path("exports/<uuid:export_id>/download/", views.export_download, name="export-download"),
]
