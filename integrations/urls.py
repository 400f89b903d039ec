from __future__ import annotations

from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.integration_list, name="list"),
    path("recalls/", views.recall_requests, name="recalls"),
    path("recalls/<int:pk>/decide/", views.recall_decide, name="recall-decide"),
    path("department/<str:code>/new/", views.integration_create, name="create"),
    path("department/<str:code>/target/", views.policy_save, name="policy-save"),
    path("<int:pk>/", views.integration_detail, name="detail"),
    path("<int:pk>/secret/", views.integration_secret, name="secret"),
    path("<int:pk>/toggle/", views.integration_toggle, name="toggle"),
    path("<int:pk>/rotate/", views.integration_rotate, name="rotate"),
]
