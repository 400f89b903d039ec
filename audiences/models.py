"""Audience reference data and recipients."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from common.i18n import in_reader_language


class Region(models.TextChoices):
    HONG_KONG_ISLAND = "HKI", _("Hong Kong Island")
    KOWLOON = "KLN", _("Kowloon")
    NEW_TERRITORIES = "NT", _("New Territories")


class District(models.Model):
    """One of the 18 District Council districts; loaded by migration, never edited in the app."""

    code = models.CharField(max_length=2, unique=True)
    eac_letter = models.CharField(max_length=1)
    name_en = models.CharField(max_length=60)
    name_zh = models.CharField(max_length=20)
    region = models.CharField(max_length=3, choices=Region.choices)
    hko_place = models.CharField(
        max_length=60, help_text="Place name in the Observatory's rhrread feed"
    )

    class Meta:
        ordering = ["eac_letter"]

    def __str__(self) -> str:
        return in_reader_language(self.name_en, self.name_zh)


class Language(models.TextChoices):
    ENGLISH = "en", _("English")
    TRADITIONAL_CHINESE = "zh-hant", _("Traditional Chinese")
    BOTH = "both", _("English and Traditional Chinese")


class RiskLevel(models.TextChoices):
    HIGH = "high", _("High")
    MEDIUM = "medium", _("Medium")
    LOW = "low", _("Low")


class SubscriptionState(models.TextChoices):
    SUBSCRIBED = "subscribed", _("Subscribed")
    UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")


class SubscriptionSource(models.TextChoices):
    IMPORT = "import", _("Import")
    DIRECTORY = "directory", _("Directory sync")
    EVENT = "event", _("Directory event")
    ERASURE = "erasure", _("Erasure request")
    FOLLOW_EVENT = "follow_event", _("Service Window event")
    FOLLOW_SYNC = "follow_sync", _("Service Window reconciliation")


class RecipientChannel(models.TextChoices):
    """How DingTalk reaches a person: a member of the department's DingTalk organisation gets
    work notifications; a follower of its Service Window (互动服务窗) gets its mass sends."""

    MEMBER = "member", _("Organisation member (work notifications)")
    FOLLOWER = "follower", _("Service Window follower")


class SegmentChannel(models.TextChoices):
    MEMBERS = "members", _("Organisation members")
    FOLLOWERS = "followers", _("Service Window followers")
    BOTH = "both", _("Members and followers")


class Tag(models.Model):
    """One word of a department's free-tag vocabulary (imports may only use words listed here)."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("department"),
    )
    name = models.SlugField(_("tag"), max_length=40)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # Whether people with this tag are a high-risk group: a notice to a segment filtering on a
    # high-risk tag needs two approvers. A flag of its own (audited when it changes), never read
    # from the name, so renaming a tag cannot lower the approval rule.
    high_risk = models.BooleanField(_("high-risk group"), default=False)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["department_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["department", "name"], name="tag_unique_per_department")
        ]

    def __str__(self) -> str:
        return self.name


class Recipient(models.Model):
    """A person a department may notify. Personal fields are blanked on erasure; the row stays for counts."""

    # db_index off on purpose: the unique (department, user id) index and the segment index lead with it.
    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        verbose_name=_("department"),
    )
    dingtalk_user_id = models.CharField(_("DingTalk user id"), max_length=64)
    name = models.CharField(_("name"), max_length=100, blank=True)
    mobile = models.CharField(_("mobile (E.164)"), max_length=16, blank=True)
    language = models.CharField(
        _("preferred language"), max_length=8, choices=Language.choices, default=Language.BOTH
    )
    # No database constraint: the 18 districts are reference rows loaded by a migration and
    # never deleted (PROTECT still guards the ORM), every writer takes the id from that table,
    # and the constraint's per-row check is 3 of the ~15 CPU seconds of a million-row import.
    district = models.ForeignKey(
        District,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("district"),
    )
    # No index of its own (a SlugField's default): a handful of values, filtered only together
    # with the others through recipient_segment_idx; two more indexes cost a bulk import ~2 s.
    function_tag = models.SlugField(_("function"), max_length=32, blank=True, db_index=False)
    risk_level = models.CharField(
        _("risk level"), max_length=8, choices=RiskLevel.choices, blank=True
    )
    tags: models.ManyToManyField[Tag, RecipientTag] = models.ManyToManyField(
        Tag, through="RecipientTag", related_name="recipients", blank=True, verbose_name=_("tags")
    )
    subscription_state = models.CharField(
        _("subscription"),
        max_length=16,
        choices=SubscriptionState.choices,
        default=SubscriptionState.SUBSCRIBED,
    )
    subscription_source = models.CharField(
        _("subscription source"), max_length=16, choices=SubscriptionSource.choices
    )
    subscription_changed_at = models.DateTimeField(_("subscription changed"))
    dingtalk_dept_ids = models.JSONField(_("DingTalk departments"), default=list, blank=True)
    # A database default too: the bulk importers' own INSERTs (audiences.merge) leave it out.
    channel = models.CharField(
        _("channel"),
        max_length=8,
        choices=RecipientChannel.choices,
        default=RecipientChannel.MEMBER,
        db_default=RecipientChannel.MEMBER,
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    erased_at = models.DateTimeField(_("erased"), null=True, blank=True)

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "dingtalk_user_id"],
                name="recipient_unique_user_per_department",
            )
        ]
        indexes = [
            # Covers segment counts (index-only scans on PostgreSQL); erased rows never match a segment.
            models.Index(
                fields=[
                    "department",
                    "subscription_state",
                    "district",
                    "risk_level",
                    "function_tag",
                    "channel",
                ],
                name="recipient_segment_idx",
                condition=models.Q(erased_at__isnull=True),
            ),
            # The delivery sweeper's search for rows written for people erased mid-snapshot
            # starts from the (few) erased recipients instead of the whole delivery table.
            models.Index(
                fields=["id"],
                name="recipient_erased_idx",
                condition=models.Q(erased_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        if self.erased_at is not None:
            return f"erased recipient #{self.pk}"
        return f"{self.name} ({self.dingtalk_user_id})"

    @property
    def masked_mobile(self) -> str:
        return mask_mobile(self.mobile)


def mask_mobile(mobile: str) -> str:
    """+85291234567 -> '+852 ••••••67': enough to recognise a number, not to dial it."""
    if not mobile:
        return ""
    return f"{mobile[:4]} {'•' * max(len(mobile) - 6, 0)}{mobile[-2:]}"


class RecipientTag(models.Model):
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["recipient", "tag"], name="recipienttag_unique")
        ]
        indexes = [models.Index(fields=["tag", "recipient"], name="recipienttag_tag_idx")]

    def __str__(self) -> str:
        return f"{self.recipient_id} · {self.tag_id}"


class Venue(models.Model):
    """A place people check in at (shop, clinic, venue) for the food-recall style of segment."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("department"),
    )
    code = models.CharField(_("venue code"), max_length=40)
    name = models.CharField(_("name"), max_length=200)
    district = models.ForeignKey(
        District,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("district"),
    )
    latitude = models.FloatField(_("latitude"))
    longitude = models.FloatField(_("longitude"))

    class Meta:
        verbose_name = _("venue")
        verbose_name_plural = _("venues")
        ordering = ["department_id", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "code"], name="venue_unique_code_per_department"
            )
        ]
        indexes = [
            models.Index(fields=["department", "latitude", "longitude"], name="venue_position_idx")
        ]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"


class CheckIn(models.Model):
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    venue = models.ForeignKey(Venue, on_delete=models.CASCADE, related_name="+", db_index=False)
    checked_in_at = models.DateTimeField(_("checked in at"))

    class Meta:
        ordering = ["-checked_in_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "venue", "checked_in_at"], name="checkin_unique_visit"
            )
        ]
        indexes = [
            models.Index(
                fields=["venue", "checked_in_at", "recipient"], name="checkin_venue_time_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient_id} at {self.venue_id} {self.checked_in_at:%Y-%m-%d %H:%M}"


class SegmentKind(models.TextChoices):
    FILTER = "filter", _("Saved filter")
    LIST = "list", _("Chosen recipients")


class SubscriptionFilter(models.TextChoices):
    SUBSCRIBED = "subscribed", _("Subscribed only")
    UNSUBSCRIBED = "unsubscribed", _("Unsubscribed only")
    ANY = "any", _("Everyone")


class Segment(models.Model):
    """A named description of who a notice is for; evaluated by audiences.selectors.segment_recipients."""

    department = models.ForeignKey(
        "accounts.Department", on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(_("name"), max_length=120)
    description = models.CharField(_("description"), max_length=300, blank=True)
    kind = models.CharField(
        _("kind"), max_length=8, choices=SegmentKind.choices, default=SegmentKind.FILTER
    )
    subscription = models.CharField(
        _("subscription"),
        max_length=16,
        choices=SubscriptionFilter.choices,
        default=SubscriptionFilter.SUBSCRIBED,
    )
    channel = models.CharField(
        _("reached through"),
        max_length=10,
        choices=SegmentChannel.choices,
        default=SegmentChannel.MEMBERS,
    )
    districts = models.ManyToManyField(District, blank=True, related_name="+")
    function_tags = models.JSONField(_("functions"), default=list, blank=True)
    risk_levels = models.JSONField(_("risk levels"), default=list, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="+")
    members: models.ManyToManyField[Recipient, SegmentMember] = models.ManyToManyField(
        Recipient, through="SegmentMember", blank=True, related_name="+"
    )
    # Venue rule: checked in at one of `venues`, or within radius_m of the centre, between the two times.
    venue_rule = models.BooleanField(_("venue rule"), default=False)
    venues = models.ManyToManyField(Venue, blank=True, related_name="+")
    centre_latitude = models.FloatField(_("centre latitude"), null=True, blank=True)
    centre_longitude = models.FloatField(_("centre longitude"), null=True, blank=True)
    radius_m = models.PositiveIntegerField(_("radius (metres)"), null=True, blank=True)
    checked_in_from = models.DateTimeField(_("checked in from"), null=True, blank=True)
    checked_in_to = models.DateTimeField(_("checked in until"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["department_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "name"], name="segment_unique_name_per_department"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "recipient"], name="segmentmember_unique")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} · {self.recipient_id}"


class ImportState(models.TextChoices):
    QUEUED = "queued", _("Waiting to be checked")
    VALIDATING = "validating", _("Checking the file")
    VALIDATED = "validated", _("Checked, waiting for confirmation")
    REJECTED = "rejected", _("Rejected: nothing was written")
    APPLY_QUEUED = "apply_queued", _("Waiting to be imported")
    APPLYING = "applying", _("Importing")
    DONE = "done", _("Imported")
    FAILED = "failed", _("Failed: nothing was written")


class FileFormat(models.TextChoices):
    """The recipient file formats an import reads (audiences.validation.read_file)."""

    CSV = "csv", "CSV"
    XLSX = "xlsx", "XLSX"


class ImportJob(models.Model):
    """A large recipient file checked and imported in the background, with progress for the page."""

    department = models.ForeignKey(
        "accounts.Department", on_delete=models.CASCADE, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    file = models.FileField(upload_to="audiences/imports/")
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64)
    file_format = models.CharField(max_length=8, choices=FileFormat.choices)
    state = models.CharField(max_length=16, choices=ImportState.choices, default=ImportState.QUEUED)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    # The language of the person who started the import: the worker writes the row errors in it.
    language = models.CharField(max_length=16, default="en")
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker last claimed the job (validating/applying): the stale-work sweeper reads it.
    state_changed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_state_display()})"

    @property
    def html_lang(self) -> str:
        """The row errors' language as an HTML lang attribute."""
        return "zh-Hant-HK" if self.language == "zh-hant" else "en-HK"

    @property
    def percent(self) -> int:
        if not self.total_rows:
            return 0
        return min(100, round(100 * self.processed_rows / self.total_rows))


class DirectorySettings(models.Model):
    """How a department's DingTalk directory feeds its recipients."""

    department = models.OneToOneField(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("department"),
    )
    root_dept_id = models.BigIntegerField(_("root DingTalk department"), default=1)
    callback_token_ref = models.CharField(
        _("callback token reference"),
        max_length=255,
        blank=True,
        help_text=_("env:NAME or file:/path; never the token itself."),
    )
    callback_aes_key_ref = models.CharField(
        _("callback AES key reference"),
        max_length=255,
        blank=True,
        help_text=_("env:NAME or file:/path; never the key itself."),
    )
    # The Service Window's account id (the ``unionid`` of its mass sends); blank: none.
    service_account_id = models.CharField(_("Service Window account id"), max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last synced at"))
    # The DingTalk department tree the last sync walked: {"root": id, "parents": {"child": parent}}.
    # Delivery needs it to know what a dept_id_list send reaches (sub-departments included).
    dept_tree = models.JSONField(
        default=dict, blank=True, editable=False, verbose_name=_("DingTalk department tree")
    )
    # What an organisation- or department-wide send reaches: the directory's members (portal
    # recipients or not) counted by the last sync or member count, and when they were counted.
    member_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # {"dept id": distinct members in that department and everything below it}
    dept_member_counts = models.JSONField(default=dict, blank=True, editable=False)
    members_counted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("directory settings")
        verbose_name_plural = _("directory settings")

    def __str__(self) -> str:
        return f"directory settings #{self.pk}"


class DistrictMapping(models.Model):
    """Maps a DingTalk department (and everything under it) to one of the 18 districts."""

    department = models.ForeignKey(
        "accounts.Department",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("department"),
    )
    dingtalk_dept_id = models.BigIntegerField(_("DingTalk department id"))
    district = models.ForeignKey(
        District, on_delete=models.PROTECT, related_name="+", verbose_name=_("district")
    )

    class Meta:
        verbose_name = _("district mapping")
        verbose_name_plural = _("district mappings")
        ordering = ["department_id", "dingtalk_dept_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["department", "dingtalk_dept_id"], name="districtmapping_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dingtalk_dept_id} → {self.district.code}"


class SyncState(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class DirectorySync(models.Model):
    """One run of the directory walk; the task claims it PENDING -> RUNNING so a redelivery does nothing."""

    department = models.ForeignKey(
        "accounts.Department", on_delete=models.CASCADE, related_name="+"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=16, choices=SyncState.choices, default=SyncState.PENDING)
    counts = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"directory sync #{self.pk} ({self.state})"
