"""Reads of the central system, always through a tenant: nothing crosses organizations."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from cpms.tenancy import Tenant

from .models import (
    Charger,
    ChargerConfigurationKey,
    Command,
    Connector,
    DeviceVariable,
    EVChargingNeeds,
    ExternalChargingLimit,
    Frame,
    IdToken,
    MeterSample,
    Reservation,
    Session,
    Site,
    TransactionEventRecord,
)


def sites_for(tenant: Tenant) -> QuerySet[Site]:
    qs = Site.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(pk__in=tenant.site_ids)
    return qs


def chargers_for(tenant: Tenant) -> QuerySet[Charger]:
    qs = Charger.objects.filter(organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(site_id__in=tenant.site_ids)
    return qs


def connectors_for(tenant: Tenant) -> QuerySet[Connector]:
    return Connector.objects.filter(charger__in=chargers_for(tenant))


def sessions_for(tenant: Tenant) -> QuerySet[Session]:
    qs = Session.objects.filter(charger__organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(charger__site_id__in=tenant.site_ids)
    return qs


def meter_samples_for(tenant: Tenant) -> QuerySet[MeterSample]:
    qs = MeterSample.objects.filter(charger__organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(charger__site_id__in=tenant.site_ids)
    return qs


def id_tokens_for(tenant: Tenant) -> QuerySet[IdToken]:
    # Id tokens belong to drivers of the whole organization; site hosts do not manage them.
    if tenant.is_site_host:
        return IdToken.objects.none()
    return IdToken.objects.filter(organization_id=tenant.organization_id)


def frames_for(tenant: Tenant) -> QuerySet[Frame]:
    qs = Frame.objects.filter(charger__organization_id=tenant.organization_id)
    if tenant.site_ids is not None:
        qs = qs.filter(Q(charger__site_id__in=tenant.site_ids))
    return qs


def device_variables_for(tenant: Tenant) -> QuerySet[DeviceVariable]:
    """The OCPP 2.x device model of the tenant's chargers."""
    return DeviceVariable.objects.filter(charger__in=chargers_for(tenant))


def transaction_events_for(tenant: Tenant) -> QuerySet[TransactionEventRecord]:
    return TransactionEventRecord.objects.filter(session__in=sessions_for(tenant))


def external_charging_limits_for(tenant: Tenant) -> QuerySet[ExternalChargingLimit]:
    return ExternalChargingLimit.objects.filter(charger__in=chargers_for(tenant))


def ev_charging_needs_for(tenant: Tenant) -> QuerySet[EVChargingNeeds]:
    return EVChargingNeeds.objects.filter(charger__in=chargers_for(tenant))


def commands_for(tenant: Tenant) -> QuerySet[Command]:
    """Commands sent (or to be sent) to the tenant's chargers."""
    return Command.objects.filter(charger__in=chargers_for(tenant))


def reservations_for(tenant: Tenant) -> QuerySet[Reservation]:
    """Reservations of the tenant's chargers."""
    return Reservation.objects.filter(
        organization_id=tenant.organization_id, charger__in=chargers_for(tenant)
    )


def configuration_keys_for(tenant: Tenant) -> QuerySet[ChargerConfigurationKey]:
    """The OCPP 1.6 configuration keys the tenant's chargers last reported."""
    return ChargerConfigurationKey.objects.filter(charger__in=chargers_for(tenant))
