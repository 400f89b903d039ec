from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import set_language

from common.views import public_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/setlang/", public_view(set_language), name="set_language"),
    path("", include("operations.urls")),
    path("audit/", include("audit.urls")),
    # The per-notice receipt report lives with delivery, but auditors find it under /audit/.
    path("audit/", include("delivery.receipt_urls")),
    path("audiences/", include("audiences.urls")),
    path("notices/", include("notices.urls")),
    path("delivery/", include("delivery.urls")),
    path("integrations/", include("integrations.urls")),
    path("api/", include("integrations.api_urls")),
    path("", include("accounts.urls")),
]

handler400 = "common.error_views.bad_request"
handler403 = "common.error_views.permission_denied"
handler404 = "common.error_views.page_not_found"
handler500 = "common.error_views.server_error"
