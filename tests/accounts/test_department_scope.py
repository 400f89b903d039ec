"""A user of department A can neither list nor open nor change department B's objects, for each role."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Department, Role
from common.testing.cast import verified_client_for

ROLES = [Role.PR_OFFICER, Role.SUPERVISOR, Role.DEPARTMENT_ADMIN, Role.AUDITOR, Role.SYSTEM_ADMIN]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_home_lists_only_the_users_department(cast_a, cast_b, role) -> None:
    client = verified_client_for(cast_a.by_role(role))
    page = client.get(reverse("accounts:home"))
    assert page.status_code == 200
    assert list(page.context["departments"]) == [cast_a.department]
    assert b"Food and Environmental Hygiene" not in page.content


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_another_departments_pages_answer_404_like_a_missing_one(cast_a, cast_b, role) -> None:
    client = verified_client_for(cast_a.by_role(role))
    for name in ("accounts:department-detail", "accounts:department-settings"):
        other = client.get(reverse(name, args=[cast_b.department.code]))
        missing = client.get(reverse(name, args=["NOPE"]))
        assert other.status_code == missing.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_nobody_can_change_another_departments_settings(cast_a, cast_b, role) -> None:
    client = verified_client_for(cast_a.by_role(role))
    response = client.post(
        reverse("accounts:department-settings", args=[cast_b.department.code]),
        {"name_en": "Hijacked", "name_zh": "x", "dingtalk_edition": "standard"},
    )
    assert response.status_code == 404
    cast_b.department.refresh_from_db()
    assert cast_b.department.name_en == "Food and Environmental Hygiene Department"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_admin_changelists_never_show_the_other_department(cast_a, cast_b, role) -> None:
    client = verified_client_for(cast_a.by_role(role))
    for url in (
        reverse("admin:accounts_department_changelist"),
        reverse("admin:accounts_membership_changelist"),
        reverse("admin:auth_user_changelist"),
    ):
        page = client.get(url)
        assert page.status_code in (200, 403), url
        assert b"fehd." not in page.content, url
        assert b"FEHD" not in page.content, url
    change = client.get(reverse("admin:accounts_department_change", args=[cast_b.department.pk]))
    assert change.status_code in (302, 403, 404)
    if (
        change.status_code == 302
    ):  # Django admin redirects an object outside the queryset to the index
        assert change["Location"] == reverse("admin:index")


@pytest.mark.django_db
def test_own_department_settings_are_for_the_system_administrator_only(cast_a) -> None:
    url = reverse("accounts:department-settings", args=[cast_a.department.code])
    for role in (Role.PR_OFFICER, Role.SUPERVISOR, Role.DEPARTMENT_ADMIN, Role.AUDITOR):
        assert verified_client_for(cast_a.by_role(role)).get(url).status_code == 403
    client = verified_client_for(cast_a.system_admin)
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "name_en": "Water Supplies Department (HK)",
            "name_zh": "水務署",
            "dingtalk_agent_id": "3003",
            "dingtalk_app_key": "ding-wsd",
            "dingtalk_secret_ref": "env:DINGTALK_SECRET_WSD",
            "dingtalk_edition": "professional",
        },
    )
    assert response.status_code == 302
    assert Department.objects.get(code="WSD").name_en == "Water Supplies Department (HK)"


@pytest.mark.django_db
def test_a_malformed_secret_reference_is_refused_next_to_the_field(cast_a) -> None:
    client = verified_client_for(cast_a.system_admin)
    response = client.post(
        reverse("accounts:department-settings", args=[cast_a.department.code]),
        {
            "name_en": "WSD",
            "name_zh": "水務署",
            "dingtalk_secret_ref": "plain-text-secret",
            "dingtalk_edition": "standard",
        },
    )
    assert response.status_code == 200
    assert "dingtalk_secret_ref" in response.context["form"].errors
    cast_a.department.refresh_from_db()
    assert cast_a.department.dingtalk_secret_ref == ""
