from __future__ import annotations

from django.urls import path

from operations import metrics, views

urlpatterns = [
    path("health/", views.live, name="health"),
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("metrics", metrics.metrics, name="metrics"),
]
