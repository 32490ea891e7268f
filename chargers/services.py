"""Writes for the OCPP central system. Handlers validate and normalize; these act atomically.

Every function is synchronous and is called from a consumer through one
``database_sync_to_async`` hop per frame.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import F, Q
from django.utils import timezone

from cpms.models import Organization

from . import bulk, events, metering, normalize, normalize2x, passwords, quirks
from .batching import FrameRow, SampleRow, StatusRow
from .command_services import (  # noqa: F401 - commands are services of this app too
    CommandInvalid,
    CommandRefused,
    command_create,
    command_retry,
    remote_start_link,
)
from .commands import WAITING
from .models import (
    Charger,
    ChargerEvent,
    Command,
    Connector,
    ConnectorStatusChange,
    DataTransferRecord,
    EVChargingNeeds,
    ExternalChargingLimit,
    IdToken,
    IdTokenStatus,
    MeterSample,
    QuirkProfile,
    RegistrationStatus,
    Session,
    SessionState,
    Site,
    TransactionEventRecord,
    UnmatchedStop,
)
from .reservation_services import reservation_use

logger = logging.getLogger(__name__)


# --- Chargers and connections ------------------------------------------------------------------


def charger_create(
    *,
    identity: str,
    organization: Organization,
    password: str | None = None,
    site: Site | None = None,
    registration_status: str = RegistrationStatus.ACCEPTED,
    heartbeat_interval: int | None = None,
) -> Charger:
    return Charger.objects.create(
        identity=identity,
        organization=organization,
        site=site,
        password_hash=passwords.hash_password(password) if password else "",
        registration_status=registration_status,
        heartbeat_interval=heartbeat_interval,
    )


def charger_set_password(*, charger: Charger, password: str) -> None:
    charger.password_hash = passwords.hash_password(password)
    charger.save(update_fields=["password_hash"])


# The fields an operator may change on a charger; the rest comes from the charger itself.
CHARGER_EDITABLE_FIELDS = frozenset({"site", "registration_status", "heartbeat_interval"})


def charger_update(*, charger: Charger, data: dict[str, Any]) -> Charger:
    """Change the operator-editable fields; they take effect at the charger's next boot."""
    fields = [name for name in data if name in CHARGER_EDITABLE_FIELDS]
    for name in fields:
        setattr(charger, name, data[name])
    if fields:
        charger.save(update_fields=fields)
    return charger


def chargers_registration_set(*, charger_pks: Iterable[int], status: str) -> int:
    """Set many chargers' registration status (it takes effect at each one's next boot); how
    many chargers there were. Their rows are locked in pk order first, as every batched write
    of charger rows does (see ``bulk.rows_update``)."""
    with transaction.atomic():
        locked = list(
            Charger.objects.select_for_update(no_key=True)
            .filter(pk__in=list(charger_pks))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        return Charger.objects.filter(pk__in=locked).update(registration_status=status)


# --- Sites ---------------------------------------------------------------------------------------

SITE_EDITABLE_FIELDS = frozenset(
    {"name", "address", "city", "postal_code", "country", "latitude", "longitude", "time_zone"}
)


def site_create(*, organization: Organization, name: str, **fields: Any) -> Site:
    unknown = set(fields) - SITE_EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"site_create() got unknown fields {sorted(unknown)}")
    return Site.objects.create(organization=organization, name=name, **fields)


def site_update(*, site: Site, data: dict[str, Any]) -> Site:
    fields = [name for name in data if name in SITE_EDITABLE_FIELDS]
    for name in fields:
        setattr(site, name, data[name])
    if fields:
        site.save(update_fields=fields)
    return site


def site_delete(*, site: Site) -> None:
    """Remove a site; its chargers stay in the organization with no site."""
    site.delete()


@dataclass(frozen=True, slots=True)
class Connection:
    """What a consumer needs to know about the charger it serves, loaded once at the handshake."""

    charger_pk: int
    organization_pk: int
    identity: str
    registration_status: str
    heartbeat_interval: int
    # The consumer that held this charger's socket before, to be told to close it.
    previous_channel: str = ""
    # The charger's quirk corrections and its site's time zone (see chargers.quirks).
    corrections: frozenset[str] = frozenset()
    time_zone: str = "UTC"
    # Its commands waiting to be sent when it connected, oldest first.
    waiting_commands: tuple[int, ...] = ()


class Refused(Exception):
    """The handshake is refused; the message says why (logged, never sent to the charger)."""


def charger_connect(
    *, identity: str, password: str | None, ocpp_version: str, channel_name: str
) -> Connection:
    """Authenticate a charger at the WebSocket handshake and mark it connected."""
    login = charger_authenticate(identity=identity, password=password)
    arrival = Arrival(login=login, ocpp_version=ocpp_version, channel_name=channel_name)
    return chargers_connected_many(arrivals=[arrival])[0]


@dataclass(frozen=True, slots=True)
class Login:
    """What a handshake learned about the charger whose credentials held."""

    charger_pk: int
    organization_pk: int
    identity: str
    registration_status: str
    heartbeat_interval: int | None
    channel_name: str  # the channel that held its socket before, if any
    time_zone: str
    corrections: frozenset[str]


# Read as plain values, in one query: no model instances on the connect path.
_LOGIN_FIELDS = (
    "pk",
    "organization_id",
    "identity",
    "registration_status",
    "heartbeat_interval",
    "channel_name",
    "site__time_zone",
    "quirk_profile__enabled",
    "quirk_profile__corrections",
    "password_hash",
)


def charger_authenticate(*, identity: str, password: str | None) -> Login:
    """The charger a handshake names, if its credentials hold."""
    if any(ord(character) < 32 for character in identity):
        # No charger has control characters in its id (and PostgreSQL cannot even look for NUL).
        raise Refused(f"charger id {identity!r} has control characters")
    try:
        row = Charger.objects.values_list(*_LOGIN_FIELDS).get(identity=identity)
    except Charger.DoesNotExist:
        if not settings.CPMS_AUTO_REGISTER:
            raise Refused(f"unknown charger {identity!r}") from None
        charger = _charger_auto_register(identity=identity, password=password)
        # Checked like any other: another socket may have registered it first, with another
        # password.
        row = Charger.objects.values_list(*_LOGIN_FIELDS).get(pk=charger.pk)
    password_hash = row[-1]
    if not password_hash:
        if not settings.CPMS_AUTO_REGISTER:
            raise Refused(f"charger {identity!r} has no password set")
        if password:
            # First use under auto-registration: the charger's own password becomes its secret.
            Charger.objects.filter(pk=row[0]).update(
                password_hash=passwords.hash_password(password)
            )
    elif password is None:
        raise Refused(f"charger {identity!r} sent no password")
    elif not passwords.verify_password(identity, password, password_hash):
        raise Refused(f"charger {identity!r} sent a wrong password")
    elif passwords.needs_update(password, password_hash):
        # Once per charger: a PBKDF2 hash of a machine secret becomes its digest, or a digest
        # made under a retired SECRET_KEY is made again under the current one.
        Charger.objects.filter(pk=row[0], password_hash=password_hash).update(
            password_hash=passwords.hash_password(password)
        )
    return _login(row)


def _login(row: tuple[Any, ...]) -> Login:
    pk, organization_pk, identity, status, interval, channel, time_zone, enabled, corrections, _ = (
        row
    )
    return Login(
        charger_pk=pk,
        organization_pk=organization_pk,
        identity=identity,
        registration_status=status,
        heartbeat_interval=interval,
        channel_name=channel,
        time_zone=time_zone or "UTC",
        corrections=frozenset(str(name) for name in corrections or []) if enabled else frozenset(),
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """An authenticated charger whose socket is about to be accepted."""

    login: Login
    ocpp_version: str
    channel_name: str


def chargers_connected_many(*, arrivals: list[Arrival]) -> list[Connection]:
    """Mark chargers connected (one statement for the lot) and record their connections; what
    each consumer needs to know, in order. A charger twice in the list (two sockets racing) is
    taken as connecting twice in that order: the second replaces the first."""
    now = timezone.now()
    previous: list[str] = []  # the channel each arrival replaces
    latest: dict[int, Arrival] = {}
    for arrival in arrivals:
        login = arrival.login
        before = (
            latest[login.charger_pk].channel_name
            if login.charger_pk in latest
            else login.channel_name
        )
        previous.append(before if before != arrival.channel_name else "")
        latest[login.charger_pk] = arrival
    with transaction.atomic():
        bulk.rows_update(
            Charger,
            ["connected", "ocpp_version", "last_seen", "channel_name"],
            [(pk, True, a.ocpp_version, now, a.channel_name) for pk, a in latest.items()],
        )
        ChargerEvent.objects.bulk_create(
            [
                ChargerEvent(
                    charger_id=a.login.charger_pk,
                    kind=ChargerEvent.Kind.CONNECTION,
                    status="Connected",
                    timestamp=now,
                    detail={"ocpp_version": a.ocpp_version, "channel": a.channel_name},
                )
                for a in arrivals
            ]
        )
        for a in arrivals:
            events.publish(
                "charger.connected",
                organization_pk=a.login.organization_pk,
                charger=a.login.identity,
                data={"ocpp_version": a.ocpp_version},
            )
    # Their waiting commands, in the same trip: a command made from now on finds the charger
    # connected on its new channel and is sent there.
    waiting: dict[int, list[int]] = {}
    for charger_pk, command_pk in (
        Command.objects.filter(charger_id__in=list(latest), state__in=list(WAITING))
        .order_by("id")
        .values_list("charger_id", "pk")
    ):
        waiting.setdefault(charger_pk, []).append(command_pk)
    return [
        Connection(
            charger_pk=a.login.charger_pk,
            organization_pk=a.login.organization_pk,
            identity=a.login.identity,
            registration_status=a.login.registration_status,
            heartbeat_interval=a.login.heartbeat_interval or settings.CPMS_HEARTBEAT_INTERVAL,
            previous_channel=replaced,
            corrections=a.login.corrections,
            time_zone=a.login.time_zone,
            waiting_commands=tuple(waiting.get(a.login.charger_pk, ())),
        )
        for a, replaced in zip(arrivals, previous, strict=True)
    ]


def _profile_corrections(profile: QuirkProfile | None) -> frozenset[str]:
    if profile is None or not profile.enabled:
        return frozenset()
    return frozenset(str(name) for name in profile.corrections or [])


def quirk_profile_match(*, vendor: str, model: str) -> QuirkProfile | None:
    """The enabled quirk profile for a vendor and model, the most specific one first."""
    candidates = list(QuirkProfile.objects.filter(enabled=True, vendor__iexact=vendor.strip()))
    best = quirks.match_profile(
        [
            quirks.Profile(pk=p.pk, vendor=p.vendor, model_pattern=p.model_pattern)
            for p in candidates
        ],
        vendor=vendor,
        model=model,
    )
    return next((p for p in candidates if best is not None and p.pk == best.pk), None)


def charger_disconnect(*, charger_pk: int, channel_name: str, close_code: int | None) -> None:
    now = timezone.now()
    with transaction.atomic():
        charger = Charger.objects.get(pk=charger_pk)
        # A stale socket closing late must not mark a charger that has reconnected (on any node)
        # as offline: only the connection that holds the charger's channel may clear it.
        superseded = not Charger.objects.filter(pk=charger_pk, channel_name=channel_name).update(
            connected=False, last_seen=now, channel_name=""
        )
        ChargerEvent.objects.create(
            charger=charger,
            kind=ChargerEvent.Kind.CONNECTION,
            status="Disconnected",
            timestamp=now,
            detail={"close_code": close_code, "channel": channel_name, "superseded": superseded},
        )
        if not superseded:
            events.publish(
                "charger.disconnected",
                organization_pk=charger.organization_id,
                charger=charger.identity,
                data={"close_code": close_code},
            )


def _charger_auto_register(*, identity: str, password: str | None) -> Charger:
    slug = settings.CPMS_AUTO_REGISTER_ORG
    organization = (
        Organization.objects.get(slug=slug) if slug else Organization.objects.order_by("pk").first()
    )
    if organization is None:
        raise Refused("auto-registration needs an organization; none exists")
    try:
        with transaction.atomic():
            charger = charger_create(
                identity=identity,
                organization=organization,
                password=password,
                registration_status=RegistrationStatus.PENDING,
            )
    except IntegrityError:
        charger = Charger.objects.get(identity=identity)
    logger.info("auto-registered charger %s as Pending in %s", identity, organization.slug)
    return charger


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""
    iccid: str = ""
    imsi: str = ""
    meter_type: str = ""
    meter_serial_number: str = ""
    reason: str = ""  # 2.x BootNotification reason


@dataclass(frozen=True, slots=True)
class BootResult:
    status: str
    interval: int
    corrections: frozenset[str] = frozenset()


# What a boot writes on the charger's row; the rest of the row (connection, last transaction
# id) is written by others meanwhile.
_BOOT_FIELDS = [
    "vendor",
    "model",
    "serial_number",
    "firmware_version",
    "iccid",
    "imsi",
    "meter_type",
    "meter_serial_number",
    "last_boot_at",
    "last_seen",
    "quirk_profile_id",
]


@dataclass(frozen=True, slots=True)
class Boot:
    charger_pk: int
    info: BootInfo


def charger_boot(*, charger_pk: int, info: BootInfo) -> BootResult:
    return chargers_boot_many(boots=[Boot(charger_pk=charger_pk, info=info)])[0]


def chargers_boot_many(*, boots: list[Boot]) -> list[BootResult]:
    """Record BootNotifications of many chargers in one transaction (one UPDATE for their rows);
    each one's answer, in order."""
    now = timezone.now()
    with transaction.atomic():
        pks = sorted({boot.charger_pk for boot in boots})
        # FOR NO KEY UPDATE, in pk order: the journal's rows of a charger, being flushed, need
        # not wait, and two batches never wait on each other in a circle.
        chargers = {
            charger.pk: charger
            for charger in Charger.objects.select_for_update(no_key=True, of=("self",))
            .select_related("quirk_profile")
            .filter(pk__in=pks)
            .order_by("pk")
        }
        missing = [pk for pk in pks if pk not in chargers]
        if missing:
            raise Charger.DoesNotExist(f"no charger {missing[0]}")
        profiles: dict[tuple[str, str], QuirkProfile | None] = {}
        records: list[ChargerEvent] = []
        results: list[BootResult] = []
        for boot in boots:
            charger, info = chargers[boot.charger_pk], boot.info
            charger.vendor = info.vendor
            charger.model = info.model
            charger.serial_number = info.serial_number
            charger.firmware_version = info.firmware_version
            charger.iccid = info.iccid
            charger.imsi = info.imsi
            charger.meter_type = info.meter_type
            charger.meter_serial_number = info.meter_serial_number
            charger.last_boot_at = now
            charger.last_seen = now
            if not charger.quirk_profile_pinned:
                key = (info.vendor, info.model)
                if key not in profiles:
                    profiles[key] = quirk_profile_match(vendor=info.vendor, model=info.model)
                charger.quirk_profile = profiles[key]
            detail = {"vendor": info.vendor, "model": info.model, "firmware": info.firmware_version}
            if info.reason:
                detail["reason"] = info.reason
            if charger.quirk_profile is not None:
                detail["quirk_profile"] = charger.quirk_profile.name
            records.append(
                ChargerEvent(
                    charger_id=charger.pk,
                    kind=ChargerEvent.Kind.BOOT,
                    status=charger.registration_status,
                    timestamp=now,
                    detail=detail,
                )
            )
            events.publish(
                "charger.booted",
                organization_pk=charger.organization_id,
                charger=charger.identity,
                data={"status": charger.registration_status},
            )
            if charger.registration_status == RegistrationStatus.ACCEPTED:
                interval = charger.heartbeat_interval or settings.CPMS_HEARTBEAT_INTERVAL
            else:
                interval = settings.CPMS_BOOT_RETRY_INTERVAL
            results.append(
                BootResult(
                    status=charger.registration_status,
                    interval=interval,
                    corrections=_profile_corrections(charger.quirk_profile),
                )
            )
        bulk.rows_update(
            Charger,
            _BOOT_FIELDS,
            [
                (charger.pk, *(getattr(charger, name) for name in _BOOT_FIELDS))
                for charger in chargers.values()
            ],
        )
        ChargerEvent.objects.bulk_create(records)
    return results


# --- Authorization -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorization:
    status: str
    expires_at: datetime | None = None
    group_token: str = ""
    id_token_pk: int | None = None


def id_token_authorize(
    *,
    organization_pk: int,
    token: str,
    exclude_session_pk: int | None = None,
    check_concurrent: bool = True,
    case_insensitive: bool = False,
) -> Authorization:
    """The authorization of an id token: Accepted, Blocked, Expired, Invalid or ConcurrentTx.

    2.x id tokens are case insensitive: an exact match wins, any casing matches otherwise.
    """
    tokens = IdToken.objects.filter(organization_id=organization_pk)
    id_token = tokens.filter(token=token).first()
    if id_token is None and case_insensitive:
        id_token = tokens.filter(token__iexact=token).order_by("pk").first()
    if id_token is None:
        return Authorization(status="Invalid")
    status = id_token.status
    if (
        status == IdTokenStatus.ACCEPTED
        and id_token.expires_at
        and id_token.expires_at <= timezone.now()
    ):
        status = IdTokenStatus.EXPIRED
    if status == IdTokenStatus.ACCEPTED and check_concurrent and not id_token.allow_concurrent:
        active = Session.objects.filter(id_token=id_token, state=SessionState.ACTIVE)
        if exclude_session_pk is not None:
            active = active.exclude(pk=exclude_session_pk)
        if active.exists():
            status = "ConcurrentTx"
    return Authorization(
        status=status,
        expires_at=id_token.expires_at,
        group_token=id_token.group_token,
        id_token_pk=id_token.pk,
    )


def id_token_create(
    *,
    organization: Organization,
    token: str,
    status: str = IdTokenStatus.ACCEPTED,
    expires_at: datetime | None = None,
    group_token: str = "",
    owner_name: str = "",
    type: str = "ISO14443",
    owner_email: str = "",
    allow_concurrent: bool = False,
    local_list: bool = False,
) -> IdToken:
    return IdToken.objects.create(
        organization=organization,
        token=token,
        status=status,
        expires_at=expires_at,
        group_token=group_token,
        owner_name=owner_name,
        type=type,
        owner_email=owner_email,
        allow_concurrent=allow_concurrent,
        local_list=local_list,
    )


ID_TOKEN_EDITABLE_FIELDS = frozenset(
    {
        "token",
        "type",
        "status",
        "expires_at",
        "group_token",
        "owner_name",
        "owner_email",
        "allow_concurrent",
        "local_list",
    }
)


def id_token_update(*, id_token: IdToken, data: dict[str, Any]) -> IdToken:
    fields = [name for name in data if name in ID_TOKEN_EDITABLE_FIELDS]
    for name in fields:
        setattr(id_token, name, data[name])
    if fields:
        id_token.save(update_fields=fields)
    return id_token


def id_token_delete(*, id_token: IdToken) -> None:
    """Remove an id token; its past sessions keep the id tag they were started with."""
    id_token.delete()


# --- Sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartResult:
    transaction_id: int
    authorization: Authorization
    created: bool


def _transaction_id_issue(charger_pk: int) -> int:
    """The next 1.6 transaction id of a charger: an integer no session of it has used yet.

    The counter is per charger; ids a charger chose itself (2.x, or a firmware that switched
    protocol) are skipped rather than reused.
    """
    while True:
        Charger.objects.filter(pk=charger_pk).update(
            last_transaction_id=F("last_transaction_id") + 1
        )
        issued = Charger.objects.values_list("last_transaction_id", flat=True).get(pk=charger_pk)
        if not Session.objects.filter(charger_id=charger_pk, transaction_id=str(issued)).exists():
            return issued


# Why a session was closed by us when a newer start arrived on its connector.
SUPERSEDED_REASON = "SupersededByNewTransaction"


def _connector_for(charger_pk: int, connector_id: int) -> Connector:
    connector, _ = Connector.objects.get_or_create(charger_id=charger_pk, connector_id=connector_id)
    return connector


def session_start(
    *, charger_pk: int, organization_pk: int, request: normalize.StartRequest, ocpp_version: str
) -> StartResult:
    """Open a session for a 1.6 StartTransaction; a re-send returns the first answer."""
    existing = Session.objects.filter(charger_id=charger_pk, start_key=request.start_key).first()
    if existing is not None:
        return StartResult(
            transaction_id=int(existing.transaction_id),
            authorization=_session_authorization(existing),
            created=False,
        )
    try:
        with transaction.atomic():
            connector = _connector_for(charger_pk, request.connector_id)
            for stale in Session.objects.select_for_update().filter(
                charger_id=charger_pk, connector=connector, state=SessionState.ACTIVE
            ):
                _session_close_superseded(
                    stale, superseded_at=request.timestamp, meter_wh=request.meter_start_wh
                )
            authorization = id_token_authorize(
                organization_pk=organization_pk, token=request.id_tag
            )
            transaction_id = _transaction_id_issue(charger_pk)
            session = Session.objects.create(
                charger_id=charger_pk,
                connector=connector,
                connector_number=request.connector_id,
                evse_id=request.connector_id,  # a 1.6 connector is an EVSE with one connector
                id_token_id=authorization.id_token_pk,
                id_tag=request.id_tag,
                auth_status=authorization.status,
                transaction_id=str(transaction_id),
                ocpp_version="1.6",
                start_key=request.start_key,
                started_at=request.timestamp,
                meter_start_wh=request.meter_start_wh,
                reservation_id=request.reservation_id,
                corrections=list(request.corrections),
            )
            remote_start_link(session=session)
            reservation_use(session=session)
            events.publish(
                "session.started",
                organization_pk=organization_pk,
                charger=session.charger.identity,
                data=_session_event(session),
            )
    except IntegrityError:
        # A concurrent re-send of the same start won the race: answer as it was answered.
        existing = Session.objects.get(charger_id=charger_pk, start_key=request.start_key)
        return StartResult(
            transaction_id=int(existing.transaction_id),
            authorization=_session_authorization(existing),
            created=False,
        )
    return StartResult(transaction_id=transaction_id, authorization=authorization, created=True)


def _session_authorization(session: Session) -> Authorization:
    id_token = session.id_token
    return Authorization(
        status=session.auth_status or "Invalid",
        expires_at=id_token.expires_at if id_token else None,
        group_token=id_token.group_token if id_token else "",
        id_token_pk=session.id_token_id,
    )


def _session_event(session: Session) -> dict[str, Any]:
    return {
        "session": session.pk,
        "transaction_id": session.transaction_id,
        "connector": session.connector_number,
        "state": session.state,
        "energy_wh": str(session.energy_wh),
        "started_at": normalize.format_datetime(session.started_at),
        "stopped_at": normalize.format_datetime(session.stopped_at) if session.stopped_at else None,
    }


def _session_close_superseded(
    session: Session, *, superseded_at: datetime, meter_wh: Decimal
) -> None:
    """A new start on a connector with an open session: the charger lost the stop; close it."""
    last = (
        session.meter_samples.filter(
            measurand=normalize.ENERGY_REGISTER, phase="", value__isnull=False
        )
        .order_by("-timestamp")
        .first()
    )
    last_value = last.value if last is not None else None
    candidates = [v for v in (last_value, meter_wh) if v is not None]
    meter_stop = max(candidates) if candidates else session.meter_start_wh
    if meter_stop < session.meter_start_wh:
        meter_stop = (
            last_value
            if last_value is not None and last_value >= session.meter_start_wh
            else session.meter_start_wh
        )
    session.state = SessionState.COMPLETED
    session.stopped_at = max(superseded_at, session.started_at)
    session.meter_stop_wh = meter_stop
    session.energy_wh = meter_stop - session.meter_start_wh
    session.stop_reason = SUPERSEDED_REASON
    session.save()
    ChargerEvent.objects.create(
        charger_id=session.charger_id,
        kind=ChargerEvent.Kind.RECONCILIATION,
        status="SessionClosed",
        detail={
            "session": session.pk,
            "transaction_id": session.transaction_id,
            "reason": "a new StartTransaction arrived on the same connector",
            "meter_stop_wh": str(meter_stop),
        },
    )
    # Ended like any other session, so that everything downstream (billing) sees it end.
    events.publish(
        "session.ended",
        organization_pk=session.charger.organization_id,
        charger=session.charger.identity,
        data=_session_event(session),
    )


@dataclass(frozen=True, slots=True)
class StopResult:
    authorization: Authorization | None
    matched: bool


def session_stop(
    *,
    charger_pk: int,
    organization_pk: int,
    request: normalize.StopRequest,
    raw_payload: dict[str, Any],
    register_resets: bool = False,
) -> StopResult:
    """Close a session for a 1.6 StopTransaction; idempotent, and unknown ids are kept.

    An empty ``transaction_id`` (a charger whose quirk profile says it leaves it out or sends 0)
    stops the charger's one open session, or the one open session of the same id tag.
    """
    authorization = (
        id_token_authorize(
            organization_pk=organization_pk, token=request.id_tag, check_concurrent=False
        )
        if request.id_tag
        else None
    )
    with transaction.atomic():
        if request.transaction_id:
            session = (
                Session.objects.select_for_update()
                .select_related("charger")
                .filter(charger_id=charger_pk, transaction_id=request.transaction_id)
                .first()
            )
        else:
            session = _session_for_stop_without_id(charger_pk, request)
        if session is None:
            UnmatchedStop.objects.get_or_create(
                charger_id=charger_pk,
                transaction_id=request.transaction_id,
                timestamp=request.timestamp,
                defaults={
                    "id_tag": request.id_tag,
                    "meter_stop_wh": request.meter_stop_wh,
                    "reason": request.reason,
                    "payload": raw_payload,
                },
            )
            return StopResult(authorization=authorization, matched=False)
        if session.state == SessionState.COMPLETED:
            if session.stop_reason != SUPERSEDED_REASON:
                return StopResult(authorization=authorization, matched=True)
            # The charger's own, late stop of a session we closed when a newer start arrived on
            # its connector: the charger's figures replace our estimate.
            ChargerEvent.objects.create(
                charger_id=charger_pk,
                kind=ChargerEvent.Kind.RECONCILIATION,
                status="SupersededSessionCorrected",
                detail={
                    "session": session.pk,
                    "transaction_id": session.transaction_id,
                    "estimated_meter_stop_wh": str(session.meter_stop_wh),
                    "meter_stop_wh": str(request.meter_stop_wh),
                },
            )
        _samples_insert(charger_pk, session.connector_number, session.pk, request.samples)
        session.state = SessionState.COMPLETED
        session.stopped_at = request.timestamp
        session.meter_stop_wh = request.meter_stop_wh
        session.stop_reason = request.reason
        session.stop_id_tag = request.id_tag
        session.corrections = list(
            quirks.merge(
                session.corrections or [],
                request.corrections,
                []
                if request.transaction_id
                else [quirks.Correction.STOP_WITHOUT_TRANSACTION_ID.value],
            )
        )
        _session_energy_refresh(session, explicit_start=True, register_resets=register_resets)
        session.save()
        events.publish(
            "session.ended",
            organization_pk=organization_pk,
            charger=session.charger.identity,
            data=_session_event(session),
        )
    return StopResult(authorization=authorization, matched=True)


def _session_for_stop_without_id(charger_pk: int, request: normalize.StopRequest) -> Session | None:
    """The session a StopTransaction with no usable transactionId stops, if it is unambiguous."""
    sessions = (
        Session.objects.select_for_update().select_related("charger").filter(charger_id=charger_pk)
    )
    # A re-send of a stop already applied finds the session it closed.
    stopped = sessions.filter(
        state=SessionState.COMPLETED,
        stopped_at=request.timestamp,
        meter_stop_wh=request.meter_stop_wh,
        stop_id_tag=request.id_tag,
    ).first()
    if stopped is not None:
        return stopped
    active = list(sessions.filter(state=SessionState.ACTIVE).order_by("-started_at", "-pk")[:10])
    if len(active) > 1 and request.id_tag:
        active = [s for s in active if s.id_tag == request.id_tag]
    return active[0] if len(active) == 1 else None


def _session_energy_refresh(
    session: Session, *, explicit_start: bool, register_resets: bool = False
) -> metering.Tally:
    """Recompute a session's energy from all its register readings (not saved here); the tally
    of its readings, for a running session to add later readings to.

    ``explicit_start``: the start message carried the start reading (1.6 meterStart), and a
    completed session's meterStop closes the series. Otherwise (2.x) the first and last readings
    are the session's start and stop readings.
    """
    rows = MeterSample.objects.filter(
        session=session,
        measurand=normalize.ENERGY_REGISTER,
        phase="",
        location__in=metering.SESSION_LOCATIONS,
        value__isnull=False,
    ).values_list("timestamp", "value")
    readings = [metering.Reading(moment, value) for moment, value in rows if value is not None]
    completed = session.state == SessionState.COMPLETED
    start = metering.Reading(session.started_at, session.meter_start_wh) if explicit_start else None
    tally = metering.Tally.begin(start=start, resets_on_reboot=register_resets).add(readings)
    assert tally is not None  # a fresh tally takes readings of any time
    if explicit_start:
        energy = tally.energy(
            stop=(
                metering.Reading(session.stopped_at, session.meter_stop_wh)
                if completed and session.stopped_at and session.meter_stop_wh is not None
                else None
            )
        )
    else:
        energy = tally.energy()
        session.meter_start_wh = energy.first_wh if energy.first_wh is not None else Decimal(0)
        if completed:
            session.meter_stop_wh = (
                energy.last_wh if energy.last_wh is not None else session.meter_start_wh
            )
    session.energy_wh = energy.energy_wh
    session.corrections = _energy_corrections(session.corrections, energy)
    return tally


def _energy_corrections(corrections: list[str] | None, energy: metering.Energy) -> list[str]:
    """A session's corrections with the register anomalies its energy figure went through."""
    anomalies = [
        name
        for name, seen in (
            (quirks.Correction.REGISTER_RESETS_ON_REBOOT.value, energy.resets),
            ("register_rollover", energy.rollovers),
            ("register_fall_ignored", energy.ignored_falls),
        )
        if seen
    ]
    return (
        list(quirks.merge(corrections or [], anomalies)) if anomalies else list(corrections or [])
    )


@dataclass(slots=True)
class OpenSession:
    """What a connection remembers of one of its charger's open sessions between MeterValues.

    Enough to add new readings to the session's energy without reading the session or its
    earlier readings, and the session's ``updated_at`` as last written: the next write is made
    only if it is still the same, which proves that nothing else changed the session since.
    """

    pk: int
    identity: str
    transaction_id: str
    connector_number: int
    started_at: datetime
    corrections: list[str]
    updated_at: datetime
    tally: metering.Tally


# A connection's open sessions, by transaction id.
OpenSessions = dict[str, OpenSession]


@dataclass(frozen=True, slots=True)
class MeterValuesIn:
    """One MeterValues message inside a transaction, as ``session_meter_values`` takes it."""

    charger_pk: int
    organization_pk: int
    connector_id: int
    transaction_id: str
    samples: list[normalize.Sample]
    register_resets: bool = False
    # The connection's memory of its sessions (see OpenSession), updated by the write.
    open_sessions: OpenSessions | None = None


def session_meter_values(
    *,
    charger_pk: int,
    organization_pk: int,
    connector_id: int,
    transaction_id: str,
    samples: list[normalize.Sample],
    register_resets: bool = False,
    open_sessions: OpenSessions | None = None,
) -> bool:
    """Persist samples that belong to a transaction; returns whether the session is known.

    With ``open_sessions`` (the connection's memory of its sessions, updated here), a session
    seen before is neither read again nor are its earlier readings: the new readings are added
    to its running tally and the session is updated in one statement. Readings out of time
    order, readings the database already had, or a session changed by anything else since, fall
    back to recomputing the energy from every reading.
    """
    message = MeterValuesIn(
        charger_pk=charger_pk,
        organization_pk=organization_pk,
        connector_id=connector_id,
        transaction_id=transaction_id,
        samples=samples,
        register_resets=register_resets,
        open_sessions=open_sessions,
    )
    return session_meter_values_many(messages=[message])[0]


def session_meter_values_many(*, messages: list[MeterValuesIn]) -> list[bool]:
    """``session_meter_values`` for many messages (of any chargers) in one transaction: the
    samples of every running session in one INSERT and their energies in one UPDATE. Whether
    each message's session is known, in order.

    The sessions' rows are locked in pk order, whatever order the messages come in, so two
    processes writing the same sessions at once (a charger that reconnected elsewhere) may wait
    for each other, never in a circle: by the UPDATE when it writes every message, else by one
    statement before anything is written one by one.
    """
    with transaction.atomic():
        known: list[bool | None] = [None] * len(messages)
        running: dict[int, OpenSession] = {}  # message index -> its running session
        running_pks: set[int] = set()
        for index, message in enumerate(messages):
            entry = (
                message.open_sessions.pop(message.transaction_id, None)
                if message.open_sessions is not None
                else None
            )
            # A charger whose quirk profile changed counts again from the start; a session twice
            # in one batch (two sockets of one charger, briefly) is read again the second time.
            if (
                entry is not None
                and entry.tally.resets_on_reboot == message.register_resets
                and entry.pk not in running_pks
            ):
                running[index] = entry
                running_pks.add(entry.pk)
        rows = [
            _sample_row(messages[index].charger_pk, messages[index].connector_id, entry.pk, sample)
            for index, entry in running.items()
            for sample in messages[index].samples
        ]
        # A sample the database already had (a re-send) may belong to any of them: all of them
        # are then recomputed from what the database holds.
        all_new = bulk.samples_insert(rows) == len(rows)
        tallies: dict[int, metering.Tally] = {}
        if all_new:
            for index, entry in running.items():
                tally = entry.tally.add(metering.readings_from(messages[index].samples))
                if tally is not None:
                    tallies[index] = tally
        if len(tallies) < len(messages):
            _sessions_lock(messages, running)
        for index in _open_sessions_update(
            {index: (running[index], tally) for index, tally in tallies.items()}
        ):
            message, entry = messages[index], running[index]
            assert message.open_sessions is not None
            message.open_sessions[message.transaction_id] = entry
            _session_meter_publish(
                message.organization_pk, entry.identity, _open_session_event(entry), message.samples
            )
            known[index] = True
        for index, message in enumerate(messages):
            if known[index] is None:
                known[index] = _session_meter_values_apply(message, inserted=index in running)
    return [bool(k) for k in known]


def _sessions_lock(messages: list[MeterValuesIn], running: dict[int, OpenSession]) -> None:
    """Lock the sessions of a batch's messages in pk order, before the messages the UPDATE
    cannot write are written one by one, each locking its session (in message order) as it goes.
    ``running`` holds the pks of those the connections remember, by message index."""
    wanted = Q(pk__in=[entry.pk for entry in running.values()])
    for index, message in enumerate(messages):
        if index not in running:
            wanted |= Q(charger_id=message.charger_pk, transaction_id=message.transaction_id)
    list(
        Session.objects.select_for_update(no_key=True)
        .filter(wanted)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _session_meter_values_apply(message: MeterValuesIn, *, inserted: bool) -> bool:
    """One message the running tally could not take: read the session and recompute in full."""
    session = (
        Session.objects.select_related("charger")
        .filter(charger_id=message.charger_pk, transaction_id=message.transaction_id)
        .first()
    )
    if not inserted:
        _samples_insert(
            message.charger_pk,
            message.connector_id,
            session.pk if session else None,
            message.samples,
        )
    if session is None:
        return False
    if session.state == SessionState.ACTIVE and (
        inserted or any(metering.is_session_register(s) for s in message.samples)
    ):
        tally = _session_energy_refresh(
            session, explicit_start=True, register_resets=message.register_resets
        )
        now = timezone.now()
        Session.objects.filter(pk=session.pk).update(
            energy_wh=session.energy_wh, corrections=session.corrections, updated_at=now
        )
        if message.open_sessions is not None:
            message.open_sessions[message.transaction_id] = OpenSession(
                pk=session.pk,
                identity=session.charger.identity,
                transaction_id=session.transaction_id,
                connector_number=session.connector_number,
                started_at=session.started_at,
                corrections=session.corrections,
                updated_at=now,
                tally=tally,
            )
    _session_meter_publish(
        message.organization_pk, session.charger.identity, _session_event(session), message.samples
    )
    return True


def _open_sessions_update(changes: dict[int, tuple[OpenSession, metering.Tally]]) -> set[int]:
    """Write running sessions' new energies, each only if nothing else wrote the session since we
    did; the keys of those written (their OpenSession updated to match).

    The rows are locked in pk order, as in ``bulk.rows_update``: on PostgreSQL the UPDATE joins
    a subquery that locks them ``ORDER BY id FOR NO KEY UPDATE``, and reaches a row only once
    the subquery has given it, whichever way the planner joins them.
    """
    if not changes:
        return set()
    now = timezone.now()
    figures = {
        key: (energy.energy_wh, _energy_corrections(entry.corrections, energy))
        for key, (entry, tally) in changes.items()
        for energy in [tally.energy()]
    }
    connection = connections[router.db_for_write(Session)]
    keys = sorted(changes, key=lambda key: changes[key][0].pk)
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Session._meta.db_table)
        pks = [changes[key][0].pk for key in keys]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS session"
                " SET energy_wh = running.energy_wh, corrections = running.corrections::jsonb,"
                " updated_at = %s"
                f" FROM (SELECT id FROM {table} WHERE id = ANY(%s::bigint[])"
                " ORDER BY id FOR NO KEY UPDATE) AS locked,"
                " unnest(%s::bigint[], %s::timestamptz[], %s::numeric[], %s::text[])"
                " AS running(id, version, energy_wh, corrections)"
                " WHERE session.id = locked.id AND running.id = locked.id"
                " AND session.updated_at = running.version AND session.state = %s"
                " RETURNING session.id",
                [
                    now,
                    pks,
                    pks,
                    [changes[key][0].updated_at for key in keys],
                    [figures[key][0] for key in keys],
                    [json.dumps(figures[key][1]) for key in keys],
                    SessionState.ACTIVE.value,
                ],
            )
            updated = {row[0] for row in cursor.fetchall()}
        written = {key for key in keys if changes[key][0].pk in updated}
    else:
        written = {
            key
            for key in keys
            for entry in [changes[key][0]]
            if Session.objects.filter(
                pk=entry.pk, state=SessionState.ACTIVE, updated_at=entry.updated_at
            ).update(energy_wh=figures[key][0], corrections=figures[key][1], updated_at=now)
        }
    for key in written:
        entry, tally = changes[key]
        entry.tally, entry.corrections, entry.updated_at = tally, figures[key][1], now
    return written


def _open_session_event(running: OpenSession) -> dict[str, Any]:
    """``_session_event`` of a running session, from memory."""
    return {
        "session": running.pk,
        "transaction_id": running.transaction_id,
        "connector": running.connector_number,
        "state": SessionState.ACTIVE,
        "energy_wh": str(running.tally.energy().energy_wh),
        "started_at": normalize.format_datetime(running.started_at),
        "stopped_at": None,
    }


def _session_meter_publish(
    organization_pk: int,
    identity: str,
    session_data: dict[str, Any],
    samples: list[normalize.Sample],
) -> None:
    events.publish(
        "session.meter",
        organization_pk=organization_pk,
        charger=identity,
        data={
            **session_data,
            "samples": [
                {
                    "measurand": s.measurand,
                    "phase": s.phase,
                    "value": str(s.value) if s.value is not None else None,
                    "unit": s.unit,
                    "timestamp": normalize.format_datetime(s.timestamp),
                }
                for s in samples
            ],
        },
    )


def _sample_row(
    charger_pk: int, connector_id: int, session_pk: int | None, s: normalize.Sample
) -> tuple[Any, ...]:
    """A sample as bulk.samples_insert takes it (in bulk.SAMPLE_FIELDS order)."""
    return (
        charger_pk,
        connector_id,
        session_pk,
        s.timestamp,
        s.measurand,
        s.phase,
        s.location,
        s.context,
        s.value,
        s.unit,
        s.raw_value,
        s.raw_unit,
        s.signed_data,
        json.dumps(list(s.corrections)),
    )


def _samples_insert(
    charger_pk: int, connector_id: int, session_pk: int | None, samples: Iterable[normalize.Sample]
) -> int:
    """Insert samples, skipping those the database already has; how many were inserted."""
    return bulk.samples_insert(
        [_sample_row(charger_pk, connector_id, session_pk, s) for s in samples]
    )


# --- OCPP 2.x authorization and transactions -----------------------------------------------------


def id_token_authorize_2x(
    *, organization_pk: int, id_token: normalize2x.IdTokenIn, exclude_session_pk: int | None = None
) -> dict[str, Any]:
    """A 2.x idTokenInfo (snake_case keys, as ``call_result`` takes it) for an idToken."""
    return _authorize_2x(organization_pk, id_token, exclude_session_pk)[0]


def _authorize_2x(
    organization_pk: int, id_token: normalize2x.IdTokenIn, exclude_session_pk: int | None
) -> tuple[dict[str, Any], int | None]:
    if not id_token.needs_lookup:
        # NoAuthorization: the charger decided no authorization is needed.
        return {"status": "Accepted"}, None
    authorization = id_token_authorize(
        organization_pk=organization_pk,
        token=id_token.token,
        exclude_session_pk=exclude_session_pk,
        case_insensitive=True,
    )
    if authorization.id_token_pk is None:
        return {"status": "Unknown"}, None
    info: dict[str, Any] = {"status": authorization.status}
    if authorization.expires_at is not None:
        info["cache_expiry_date_time"] = normalize.format_datetime(authorization.expires_at)
    if authorization.group_token:
        group_type = (
            IdToken.objects.filter(organization_id=organization_pk, token=authorization.group_token)
            .values_list("type", flat=True)
            .first()
        )
        info["group_id_token"] = {
            "id_token": authorization.group_token,
            "type": group_type or "Central",
        }
    return info, authorization.id_token_pk


V2X_VERSIONS = ("2.0.1", "2.1")


@dataclass(frozen=True, slots=True)
class TransactionEventResult:
    id_token_info: dict[str, Any] | None
    session_pk: int
    connector_number: int
    ended: bool
    duplicate: bool


def session_transaction_event(
    *,
    charger_pk: int,
    organization_pk: int,
    event: normalize2x.TransactionEventIn,
    ocpp_version: str,
    corrections: frozenset[str] = frozenset(),
) -> TransactionEventResult:
    """Apply a 2.x TransactionEvent to its session: persisted before it is answered, idempotent.

    A re-send (same seqNo and content) gets the first answer and changes nothing. Events may come
    in any order: a session is opened by whichever event arrives first, a late Started only
    corrects the start, and a late Updated after Ended still adds its readings.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                return _transaction_event_apply(
                    charger_pk=charger_pk,
                    organization_pk=organization_pk,
                    event=event,
                    ocpp_version=ocpp_version,
                    corrections=corrections,
                )
        except IntegrityError:
            # A concurrent copy of this event (or of the session's first event) won the race.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _transaction_event_apply(
    *,
    charger_pk: int,
    organization_pk: int,
    event: normalize2x.TransactionEventIn,
    ocpp_version: str,
    corrections: frozenset[str],
) -> TransactionEventResult:
    session = (
        Session.objects.select_for_update()
        .select_related("charger")
        .filter(charger_id=charger_pk, transaction_id=event.transaction_id)
        .first()
    )
    if session is not None and session.ocpp_version not in V2X_VERSIONS:
        # A charger that spoke 1.6 before: its 2.x id matches one we issued. Never mix the two.
        raise normalize.NormalizationError(
            f"transactionId {event.transaction_id!r} belongs to an earlier OCPP 1.6 session of this charger"
        )
    created = session is None
    if session is None:
        session = _session_open_2x(charger_pk=charger_pk, event=event, ocpp_version=ocpp_version)

    content_keyed = quirks.Correction.DUPLICATE_SEQ_NO.value in corrections
    key = f"sha:{event.fingerprint}" if content_keyed else event.event_key
    previous = TransactionEventRecord.objects.filter(session=session, event_key=key).first()
    conflict = previous is not None and previous.fingerprint != event.fingerprint
    if conflict:
        # The seqNo is taken by an event with other content: never drop what the charger says,
        # keep it beside the first and tell the operator.
        key = f"{key}#{event.fingerprint[:16]}"
        previous = TransactionEventRecord.objects.filter(session=session, event_key=key).first()
    if previous is not None:
        return TransactionEventResult(
            id_token_info=previous.response.get("id_token_info"),
            session_pk=session.pk,
            connector_number=session.connector_number,
            ended=session.state == SessionState.COMPLETED,
            duplicate=True,
        )

    was_active = session.state == SessionState.ACTIVE
    if event.connector_number is not None and session.connector_id is None:
        session.connector = _connector_for_evse(charger_pk, event)
        session.connector_number = event.connector_number
        session.evse_id = event.evse_id
    if event.event_type == "Started":
        session.started_at = event.timestamp
        if created and session.connector_id is not None:
            for stale in (
                Session.objects.select_for_update()
                .filter(
                    charger_id=charger_pk,
                    connector_id=session.connector_id,
                    state=SessionState.ACTIVE,
                    started_at__lt=event.timestamp,
                )
                .exclude(pk=session.pk)
            ):
                _session_close_superseded(stale, superseded_at=event.timestamp, meter_wh=Decimal(0))
    elif event.timestamp < session.started_at:
        session.started_at = event.timestamp
    if event.remote_start_id is not None and session.remote_start_id is None:
        session.remote_start_id = event.remote_start_id
    if event.reservation_id is not None and session.reservation_id is None:
        session.reservation_id = event.reservation_id

    id_token_info = None
    if event.id_token is not None:
        id_token_info, id_token_pk = _authorize_2x(organization_pk, event.id_token, session.pk)
        stopping = event.event_type == "Ended" or event.trigger_reason == "StopAuthorized"
        if stopping and session.id_tag:
            session.stop_id_tag = event.id_token.token
        elif not session.id_tag:
            session.id_tag = event.id_token.token
            session.auth_status = id_token_info["status"]
            session.id_token_id = id_token_pk

    if event.event_type == "Ended" and (was_active or session.stop_reason == SUPERSEDED_REASON):
        if not was_active:
            # The charger's own, late end of a session we closed when a newer one started on
            # its connector: its figures replace our estimate.
            ChargerEvent.objects.create(
                charger_id=charger_pk,
                kind=ChargerEvent.Kind.RECONCILIATION,
                status="SupersededSessionCorrected",
                detail={
                    "session": session.pk,
                    "transaction_id": session.transaction_id,
                    "estimated_meter_stop_wh": str(session.meter_stop_wh),
                },
            )
        session.state = SessionState.COMPLETED
        session.stopped_at = max(event.timestamp, session.started_at)
        session.stop_reason = event.stopped_reason or "Local"

    session.corrections = list(
        quirks.merge(
            session.corrections or [],
            event.corrections,
            [quirks.Correction.DUPLICATE_SEQ_NO.value] if content_keyed else [],
        )
    )
    _samples_insert(charger_pk, session.connector_number, session.pk, event.samples)
    _session_energy_refresh(
        session,
        explicit_start=False,
        register_resets=quirks.Correction.REGISTER_RESETS_ON_REBOOT.value in corrections,
    )
    session.save()
    if event.remote_start_id is not None:
        remote_start_link(session=session)
    if event.reservation_id is not None:
        reservation_use(session=session)

    TransactionEventRecord.objects.create(
        session=session,
        event_key=key,
        seq_no=event.seq_no,
        event_type=event.event_type,
        trigger_reason=event.trigger_reason,
        timestamp=event.timestamp,
        offline=event.offline,
        charging_state=event.charging_state,
        stopped_reason=event.stopped_reason,
        remote_start_id=event.remote_start_id,
        id_token=event.id_token.token if event.id_token else "",
        id_token_type=event.id_token.type if event.id_token else "",
        fingerprint=event.fingerprint,
        response={"id_token_info": id_token_info} if id_token_info is not None else {},
        corrections=list(event.corrections),
    )
    if conflict:
        ChargerEvent.objects.create(
            charger_id=charger_pk,
            kind=ChargerEvent.Kind.RECONCILIATION,
            status="SeqNoReused",
            detail={
                "session": session.pk,
                "transaction_id": session.transaction_id,
                "seq_no": event.seq_no,
                "reason": "a TransactionEvent reused the seqNo of another with different content",
            },
        )
    ended_now = was_active and session.state == SessionState.COMPLETED
    if ended_now and not content_keyed:
        gaps = transaction_event_gaps(session_pk=session.pk)
        if gaps:
            ChargerEvent.objects.create(
                charger_id=charger_pk,
                kind=ChargerEvent.Kind.RECONCILIATION,
                status="SeqNoGap",
                detail={
                    "session": session.pk,
                    "transaction_id": session.transaction_id,
                    "missing_seq_no": gaps[:50],
                },
            )

    identity = session.charger.identity
    if created:
        events.publish(
            "session.started",
            organization_pk=organization_pk,
            charger=identity,
            data=_session_event(session),
        )
    if event.samples:
        events.publish(
            "session.meter",
            organization_pk=organization_pk,
            charger=identity,
            data={**_session_event(session), "samples": _samples_event(event.samples)},
        )
    if ended_now:
        events.publish(
            "session.ended",
            organization_pk=organization_pk,
            charger=identity,
            data=_session_event(session),
        )
    return TransactionEventResult(
        id_token_info=id_token_info,
        session_pk=session.pk,
        connector_number=session.connector_number,
        ended=session.state == SessionState.COMPLETED,
        duplicate=False,
    )


def _session_open_2x(
    *, charger_pk: int, event: normalize2x.TransactionEventIn, ocpp_version: str
) -> Session:
    connector = (
        _connector_for_evse(charger_pk, event) if event.connector_number is not None else None
    )
    return Session.objects.create(
        charger_id=charger_pk,
        connector=connector,
        connector_number=event.connector_number or 0,
        evse_id=event.evse_id,
        transaction_id=event.transaction_id,
        ocpp_version=ocpp_version,
        start_key=f"tx:{event.transaction_id}",
        started_at=event.timestamp,
        meter_start_wh=Decimal(0),
    )


def _connector_for_evse(charger_pk: int, event: normalize2x.TransactionEventIn) -> Connector:
    assert event.connector_number is not None
    connector, _ = Connector.objects.get_or_create(
        charger_id=charger_pk,
        connector_id=event.connector_number,
        defaults={"evse_id": event.evse_id, "evse_connector_id": event.evse_connector_id},
    )
    return connector


def _samples_event(samples: Iterable[normalize.Sample]) -> list[dict[str, Any]]:
    return [
        {
            "measurand": s.measurand,
            "phase": s.phase,
            "value": str(s.value) if s.value is not None else None,
            "unit": s.unit,
            "timestamp": normalize.format_datetime(s.timestamp),
        }
        for s in samples
    ]


def transaction_event_gaps(*, session_pk: int) -> list[int]:
    """The seqNos missing between the lowest and highest a session's events carry."""
    seen = set(
        TransactionEventRecord.objects.filter(session_id=session_pk).values_list(
            "seq_no", flat=True
        )
    )
    if not seen:
        return []
    low, high = min(seen), max(seen)
    if high - low > 100_000:
        return []  # not a sequence this charger keeps; nothing useful to report
    return [n for n in range(low, high + 1) if n not in seen]


# --- OCPP 2.x smart charging inputs ---------------------------------------------------------------


def charging_limit_record(
    *,
    charger_pk: int,
    evse_id: int | None,
    source: str,
    is_grid_critical: bool | None,
    schedules: list[dict[str, Any]],
    detail: dict[str, Any],
) -> ExternalChargingLimit:
    """An external limit the charger reports (NotifyChargingLimit); it replaces the open one of
    the same source and EVSE."""
    now = timezone.now()
    with transaction.atomic():
        ExternalChargingLimit.objects.filter(
            charger_id=charger_pk, evse_id=evse_id, source=source, cleared_at__isnull=True
        ).update(cleared_at=now)
        return ExternalChargingLimit.objects.create(
            charger_id=charger_pk,
            evse_id=evse_id,
            source=source,
            is_grid_critical=is_grid_critical,
            schedules=schedules,
            detail=detail,
            received_at=now,
        )


def charging_limit_clear(*, charger_pk: int, evse_id: int | None, source: str) -> int:
    """ClearedChargingLimit: no evseId clears the source's limits on every EVSE."""
    limits = ExternalChargingLimit.objects.filter(
        charger_id=charger_pk, source=source, cleared_at__isnull=True
    )
    if evse_id is not None:
        limits = limits.filter(evse_id=evse_id)
    return limits.update(cleared_at=timezone.now())


def ev_charging_needs_record(
    *, charger_pk: int, needs: normalize2x.EVChargingNeedsIn, response_status: str
) -> EVChargingNeeds:
    session = (
        Session.objects.filter(
            charger_id=charger_pk, evse_id=needs.evse_id, state=SessionState.ACTIVE
        )
        .order_by("-started_at")
        .first()
    )
    return EVChargingNeeds.objects.create(
        charger_id=charger_pk,
        session=session,
        evse_id=needs.evse_id,
        requested_energy_transfer=needs.requested_energy_transfer,
        departure_time=needs.departure_time,
        energy_amount_wh=needs.energy_amount_wh,
        min_current_a=needs.min_current_a,
        max_current_a=needs.max_current_a,
        max_voltage_v=needs.max_voltage_v,
        max_power_w=needs.max_power_w,
        state_of_charge=needs.state_of_charge,
        energy_capacity_wh=needs.energy_capacity_wh,
        max_schedule_tuples=needs.max_schedule_tuples,
        response_status=response_status,
        detail=needs.detail,
    )


# --- Records -------------------------------------------------------------------------------------


def charger_event_record(
    *,
    charger_pk: int,
    kind: str,
    status: str = "",
    request_id: int | None = None,
    timestamp: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> ChargerEvent:
    now = timezone.now()
    with transaction.atomic():
        event = ChargerEvent.objects.create(
            charger_id=charger_pk,
            kind=kind,
            status=status,
            request_id=request_id,
            timestamp=timestamp or now,
            detail=detail or {},
        )
        if kind == ChargerEvent.Kind.FIRMWARE or kind == ChargerEvent.Kind.SIGNED_FIRMWARE:
            Charger.objects.filter(pk=charger_pk).update(
                firmware_status=status, firmware_status_at=now
            )
        elif kind == ChargerEvent.Kind.DIAGNOSTICS:
            Charger.objects.filter(pk=charger_pk).update(
                diagnostics_status=status, diagnostics_status_at=now
            )
        charger = Charger.objects.only("identity", "organization_id").get(pk=charger_pk)
        events.publish(
            "charger.event",
            organization_pk=charger.organization_id,
            charger=charger.identity,
            data={
                "kind": kind,
                "status": status,
                "request_id": request_id,
                "event_pk": event.pk,
            },
        )
    return event


def data_transfer_record(
    *,
    charger_pk: int,
    direction: str,
    vendor_id: str,
    message_id: str,
    data: str,
    response_status: str,
    response_data: str = "",
) -> DataTransferRecord:
    return DataTransferRecord.objects.create(
        charger_id=charger_pk,
        direction=direction,
        vendor_id=vendor_id,
        message_id=message_id,
        data=data,
        response_status=response_status,
        response_data=response_data,
    )


# --- Batched hot-path writes ---------------------------------------------------------------------


def _journal_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a charger can still send one. Written as JSON spells it.
    return text.replace("\x00", "\\u0000")


def batch_write(
    *,
    frames: list[FrameRow],
    seen: dict[int, datetime],
    statuses: list[StatusRow],
    samples: list[SampleRow],
) -> None:
    """Write one flush of the hot path: last-seen times, then the rest in one transaction.

    Last-seen times go first, in a statement of their own: held to the end of the flush's
    transaction, their row locks on chargers would keep connects, boots and session starts
    waiting (or deadlocked against its connector rows). Writing them again is harmless, so a
    flush that fails later and is retried loses nothing.
    """
    referenced = {f.charger_pk for f in frames if f.charger_pk} | set(seen)
    referenced |= {r.charger_pk for r in statuses} | {r.charger_pk for r in samples}
    existing = set(Charger.objects.filter(pk__in=referenced).values_list("pk", flat=True))
    if existing != referenced:
        # A charger deleted while its rows were buffered: its rows go with it.
        frames = [f for f in frames if f.charger_pk is None or f.charger_pk in existing]
        seen = {pk: moment for pk, moment in seen.items() if pk in existing}
        statuses = [r for r in statuses if r.charger_pk in existing]
        samples = [r for r in samples if r.charger_pk in existing]
    if seen:
        # One statement for the whole flush, however many chargers spoke.
        bulk.last_seen_update(seen)
    with transaction.atomic():
        if frames:
            # In bulk.FRAME_FIELDS order.
            bulk.frames_insert(
                [
                    (
                        f.charger_pk,
                        _journal_text(f.charger_identity)[:48],
                        f.leg,
                        f.direction,
                        f.kind,
                        _journal_text(f.message_id)[:64],
                        _journal_text(f.original_message_id)[:64],
                        _journal_text(f.action)[:64],
                        _journal_text(f.raw),
                        f.timestamp,
                    )
                    for f in frames
                ]
            )
            _journal_publish(frames)
        if statuses:
            _statuses_write(statuses)
        if samples:
            bulk.samples_insert(
                [_sample_row(r.charger_pk, r.connector_id, None, r.sample) for r in samples]
            )


def _journal_publish(frames: list[FrameRow]) -> None:
    """One compact event per charger and flush, for pages that follow that charger's frame log."""
    by_charger: dict[str, list[FrameRow]] = {}
    for row in frames:
        if row.charger_pk is not None:
            by_charger.setdefault(row.charger_identity, []).append(row)
    events.publish_to_chargers(
        "journal.frames",
        items=[
            (
                identity,
                {
                    "count": len(rows),
                    "actions": sorted({r.action for r in rows if r.action})[:10],
                    "last": normalize.format_datetime(max(r.timestamp for r in rows)),
                },
            )
            for identity, rows in by_charger.items()
        ],
    )


def _statuses_write(statuses: list[StatusRow]) -> None:
    """Upsert each connector's latest status and append every status to its history.

    The upsert locks the rows it updates in the order it is given them, so it is given them in
    key order (charger, connector number): two processes flushing the same connectors at once
    may wait for each other, never in a circle.
    """
    latest: dict[tuple[int, int], StatusRow] = {}
    for row in statuses:
        key = (row.charger_pk, row.connector_id)
        if key not in latest or latest[key].timestamp <= row.timestamp:
            latest[key] = row
    Connector.objects.bulk_create(
        [
            Connector(
                charger_id=row.charger_pk,
                connector_id=row.connector_id,
                evse_id=row.evse_id,
                evse_connector_id=row.evse_connector_id,
                status=row.status,
                raw_status=row.raw_status,
                error_code=row.error_code,
                info=row.info,
                vendor_id=row.vendor_id,
                vendor_error_code=row.vendor_error_code,
                status_at=row.timestamp,
            )
            for _, row in sorted(latest.items())
        ],
        update_conflicts=True,
        unique_fields=["charger", "connector_id"],
        update_fields=[
            "evse_id",
            "evse_connector_id",
            "status",
            "raw_status",
            "error_code",
            "info",
            "vendor_id",
            "vendor_error_code",
            "status_at",
        ],
    )
    charger_pks = {row.charger_pk for row in statuses}
    connector_pks = {
        (charger_pk, number): pk
        for pk, charger_pk, number in Connector.objects.filter(
            charger_id__in=charger_pks
        ).values_list("pk", "charger_id", "connector_id")
    }
    ConnectorStatusChange.objects.bulk_create(
        [
            ConnectorStatusChange(
                connector_id=connector_pks[(row.charger_pk, row.connector_id)],
                status=row.status,
                raw_status=row.raw_status,
                error_code=row.error_code,
                vendor_error_code=row.vendor_error_code,
                info=row.info,
                timestamp=row.timestamp,
                corrections=list(row.corrections),
            )
            for row in statuses
        ]
    )
    for row in statuses:
        events.publish(
            "connector.status",
            organization_pk=row.organization_pk,
            charger=row.charger_identity,
            data={
                "connector": row.connector_id,
                "evse": row.evse_id,
                "status": row.status,
                "raw_status": row.raw_status,
                "error_code": row.error_code,
                "timestamp": normalize.format_datetime(row.timestamp),
            },
        )


def chargers_expire_stale(*, now: datetime | None = None) -> int:
    """Mark chargers offline that are flagged connected but silent for too long.

    A live socket refreshes last_seen with every frame, so this only catches connections left
    flagged by a process that died.
    """
    now = now or timezone.now()
    expired = 0
    default_interval = settings.CPMS_HEARTBEAT_INTERVAL
    for charger in Charger.objects.filter(connected=True).only(
        "pk", "identity", "organization_id", "last_seen", "heartbeat_interval"
    ):
        interval = charger.heartbeat_interval or default_interval
        limit = timedelta(seconds=interval * settings.CPMS_OFFLINE_AFTER_HEARTBEATS + 60)
        if charger.last_seen is None or now - charger.last_seen > limit:
            with transaction.atomic():
                updated = Charger.objects.filter(pk=charger.pk, connected=True).update(
                    connected=False
                )
                if updated:
                    expired += 1
                    ChargerEvent.objects.create(
                        charger_id=charger.pk,
                        kind=ChargerEvent.Kind.CONNECTION,
                        status="Expired",
                        timestamp=now,
                        detail={
                            "last_seen": charger.last_seen.isoformat()
                            if charger.last_seen
                            else None
                        },
                    )
                    events.publish(
                        "charger.disconnected",
                        organization_pk=charger.organization_id,
                        charger=charger.identity,
                        data={"reason": "silent"},
                    )
    return expired
