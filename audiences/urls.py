from __future__ import annotations

from django.urls import path

from audiences import views

app_name = "audiences"

urlpatterns = [
    path("<str:code>/", views.home, name="home"),
    path("<str:code>/segments/new/", views.segment_create, name="segment-create"),
    path("<str:code>/segments/count/", views.segment_count, name="segment-count"),
    path("<str:code>/segments/<int:pk>/", views.segment_edit, name="segment-edit"),
    path("<str:code>/segments/<int:pk>/delete/", views.segment_delete, name="segment-delete"),
    path("<str:code>/venues/", views.venues, name="venues"),
    path("<str:code>/imports/<int:pk>/", views.import_job, name="import-job"),
    path(
        "<str:code>/imports/<int:pk>/progress/",
        views.import_job_progress,
        name="import-job-progress",
    ),
]

urlpatterns += [
    path("<str:code>/sync/", views.sync_request, name="sync"),
    path("dingtalk/<str:code>/callback/", views.dingtalk_callback, name="dingtalk-callback"),
]
