from __future__ import annotations

from django.urls import path

from notices import views

app_name = "notices"

urlpatterns = [
    path("", views.notice_list, name="list"),
    path("inbox/", views.inbox, name="inbox"),
    path("new/<str:code>/", views.compose, name="compose"),
    path("preview/<str:code>/", views.preview, name="preview"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/edit/", views.edit, name="edit"),
    path("<int:pk>/voice.wav", views.voice_clip, name="voice"),
    path("<int:pk>/submit/", views.submit, name="submit"),
    path("<int:pk>/cancel/", views.cancel, name="cancel"),
    path("<int:pk>/approve/", views.approve, name="approve"),
    path("<int:pk>/reject/", views.reject, name="reject"),
    path("api/<int:pk>/approve/", views.api_approve, name="api-approve"),
    path("api/<int:pk>/reject/", views.api_reject, name="api-reject"),
]
