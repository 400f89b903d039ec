from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from audit.actions import register
from notices.audit_actions import NoticeAuditAction


class NoticesConfig(AppConfig):
    name = "notices"
    verbose_name = _("Notices")

    def ready(self) -> None:
        register(NoticeAuditAction)
        # Imported here, not at module level: it reads the audiences and notices models.
        from audiences.changes import register_listener
        from notices.requeue import watch_segments

        register_listener(watch_segments)
