from __future__ import annotations

import json

import pytest
import requests
from django.test import override_settings
from django.urls import reverse

from accounts.services import department_update
from audiences.models import (
    DirectorySettings,
    DirectorySync,
    District,
    DistrictMapping,
    Recipient,
    SyncState,
)
from audiences.services import owned_save
from audiences.sync import directory_sync_request, directory_sync_run
from audit.models import AuditEvent
from dingtalk.simulator.config import AppConfig, demo_aes_key
from dingtalk.simulator.events import apply_directory_change
from dingtalk.simulator.testing import running_simulator

APP_KEY = "ding-test-wsd"


def _app(**extra) -> AppConfig:
    return AppConfig(
        app_key=APP_KEY,
        app_secret="wsd-secret",
        agent_id=3003,
        code="WSD",
        callback_token="wsd-token",
        callback_aes_key=demo_aes_key("wsd"),
        **extra,
    )


def _connect(cast, monkeypatch) -> None:
    monkeypatch.setenv("WSD_APP_SECRET", "wsd-secret")
    monkeypatch.setenv("WSD_CB_TOKEN", "wsd-token")
    monkeypatch.setenv("WSD_CB_AES", demo_aes_key("wsd"))
    department_update(
        actor=None,
        department=cast.department,
        changes={"dingtalk_app_key": APP_KEY, "dingtalk_secret_ref": "env:WSD_APP_SECRET"},
    )
    cast.department.refresh_from_db()
    owned_save(
        actor=None,
        obj=DirectorySettings(
            department=cast.department,
            callback_token_ref="env:WSD_CB_TOKEN",
            callback_aes_key_ref="env:WSD_CB_AES",
        ),
    )


@pytest.mark.slow
def test_sync_of_20000_people_without_throttling_then_joiners_movers_leavers(
    cast_a, monkeypatch, django_capture_on_commit_callbacks
):
    _connect(cast_a, monkeypatch)
    with (
        running_simulator(apps=[_app()], directory_size=20_000) as dt,
        override_settings(DINGTALK_BASE_URL=dt.base_url, AUDIENCES_SYNC_CALLS_PER_SECOND=15),
    ):
        directory = dt.sim.app(APP_KEY).directory
        first_dept = directory.children(1)[0]
        owned_save(
            actor=None,
            obj=DistrictMapping(
                department=cast_a.department,
                dingtalk_dept_id=first_dept,
                district=District.objects.get(code="SS"),
            ),
        )
        with django_capture_on_commit_callbacks(execute=True):
            sync = directory_sync_request(
                actor=cast_a.department_admin, department=cast_a.department
            )
        sync.refresh_from_db()
        assert sync.state == SyncState.DONE, sync.error
        assert sync.counts["throttled"] == 0
        assert sync.counts["people"] == directory.user_count() == 20_000
        assert (
            Recipient.objects.filter(
                department=cast_a.department, subscription_state="subscribed"
            ).count()
            == 20_000
        )
        in_first = list(directory.members(first_dept))[:1]
        assert Recipient.objects.get(dingtalk_user_id=in_first[0]).district.code == "SS"

        joiners = [
            apply_directory_change(dt.sim, APP_KEY, "user_add_org", dept_id=first_dept)["UserId"][0]
            for _ in range(2)
        ]
        mover = directory.userid_for(5)
        apply_directory_change(
            dt.sim, APP_KEY, "user_modify_org", userid=mover, name="Moved Person"
        )
        leaver = directory.userid_for(7)
        apply_directory_change(dt.sim, APP_KEY, "user_leave_org", userid=leaver)
        with django_capture_on_commit_callbacks(execute=True):
            second = directory_sync_request(
                actor=cast_a.department_admin, department=cast_a.department
            )
        second.refresh_from_db()
    assert second.counts["new"] == 2
    assert second.counts["left"] == 1
    assert second.counts["updated"] == 1
    assert second.counts["throttled"] == 0
    assert all(Recipient.objects.get(dingtalk_user_id=j).district.code == "SS" for j in joiners)
    assert Recipient.objects.get(dingtalk_user_id=mover).name == "Moved Person"
    gone = Recipient.objects.get(dingtalk_user_id=leaver)
    assert gone.subscription_state == "unsubscribed"
    assert gone.subscription_source == "directory"
    assert AuditEvent.objects.filter(action="audiences.synced").count() == 2
    # The task is claimed once: running it again for the same sync does nothing.
    assert directory_sync_run(sync_id=second.pk) is None


def test_sync_request_needs_manage_permission(cast_a, cast_b):
    from django.core.exceptions import PermissionDenied

    for user in (cast_a.pr_officer, cast_a.auditor, cast_b.department_admin):
        with pytest.raises(PermissionDenied):
            directory_sync_request(actor=user, department=cast_a.department)
    assert not DirectorySync.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_callback_handshake_and_directory_events(cast_a, monkeypatch, live_server):
    _connect(cast_a, monkeypatch)
    path = reverse("audiences:dingtalk-callback", args=["WSD"])
    with (
        running_simulator(
            apps=[_app(callback_url=live_server.url + path)], directory_size=50
        ) as dt,
        override_settings(DINGTALK_BASE_URL=dt.base_url),
    ):
        assert dt.sim.check_url(APP_KEY)["ok"]
        added = dt.sim.directory_event(APP_KEY, "user_add_org")
        assert added["ok"], added
        person = Recipient.objects.get(dingtalk_user_id=added["userid"])
        assert person.subscription_source == "event"
        assert dt.sim.directory_event(
            APP_KEY, "user_modify_org", userid=added["userid"], name="New Name"
        )["ok"]
        assert Recipient.objects.get(pk=person.pk).name == "New Name"
        assert dt.sim.directory_event(APP_KEY, "user_leave_org", userid=added["userid"])["ok"]
        assert Recipient.objects.get(pk=person.pk).subscription_state == "unsubscribed"

        before = Recipient.objects.count()
        forged = requests.post(
            live_server.url + path,
            params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "x"},
            data=json.dumps({"encrypt": "AAAA"}),
            timeout=5,
        )
        assert forged.status_code == 403
        assert Recipient.objects.count() == before
        assert (
            requests.post(
                live_server.url + reverse("audiences:dingtalk-callback", args=["NOPE"]),
                data="{}",
                timeout=5,
            ).status_code
            == 404
        )
