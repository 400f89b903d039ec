from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("login/verify/", views.verify, name="verify"),
    path("login/enrol/", views.enrol, name="enrol"),
    path("logout/", views.logout, name="logout"),
    path("account/backup-codes/", views.backup_codes, name="backup-codes"),
    path("account/enrol/<str:token>/", views.enrolment_link, name="enrolment-link"),
    path("departments/<str:code>/", views.department_detail, name="department-detail"),
    path("departments/<str:code>/settings/", views.department_settings, name="department-settings"),
]
