from __future__ import annotations

from django.urls import URLPattern, path

from delivery import held_views, views

app_name = "delivery"

urlpatterns: list[URLPattern] = [
    path("", views.summary, name="summary"),
    path("notices/<int:notice_id>/", views.dashboard, name="dashboard"),
    path("notices/<int:notice_id>/status.json", views.dashboard_json, name="dashboard-json"),
    path("notices/<int:notice_id>/recall/", views.recall, name="recall"),
    path("notices/<int:notice_id>/resume/", views.resume, name="resume"),
    path("notices/<int:notice_id>/outreach/", views.outreach, name="outreach"),
    path("notices/<int:notice_id>/outreach.csv", views.outreach_export, name="outreach-export"),
    path(
        "notices/<int:notice_id>/outreach/<int:delivery_id>/assign/",
        views.outreach_assign,
        name="outreach-assign",
    ),
    path(
        "notices/<int:notice_id>/outreach/<int:delivery_id>/close/",
        views.outreach_close,
        name="outreach-close",
    ),
    path(
        "notices/<int:notice_id>/held/<int:batch_id>/resend/",
        held_views.held_resend,
        name="held-resend",
    ),
    path(
        "notices/<int:notice_id>/held/<int:batch_id>/close/",
        held_views.held_close,
        name="held-close",
    ),
    path("c/<str:token>/", views.confirm, name="confirm"),
    path("n/<str:token>/", views.notice_page, name="notice-page"),
]
