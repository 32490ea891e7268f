"""Configuration baselines: the desired 1.6 keys or 2.x variables of a charger model, each
charger's drift from them, and applying them (ChangeConfiguration / SetVariables through
``command_create``), with every charger's answer kept per value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chargers import command_services
from chargers.commands import CommandState
from chargers.models import Charger, ChargerConfigurationKey, Command, DeviceVariable
from cpms.models import ApiToken, Organization

from . import drift
from .models import BaselineResult, BaselineSetting, ConfigurationBaseline

SYSTEM = "configuration baseline"
# SetVariables requests carry at most this many values each (chargers cap them, often low).
SET_VARIABLES_CHUNK = 10
APPLY_ACTIONS = frozenset({"ChangeConfiguration", "SetVariables"})
ATTRIBUTE_TYPES = ("Actual", "Target", "MinSet", "MaxSet")
VERSIONS = {
    ConfigurationBaseline.Protocol.OCPP16: ("1.6",),
    ConfigurationBaseline.Protocol.OCPP2X: ("2.0.1", "2.1"),
}


@dataclass(frozen=True, slots=True)
class SettingIn:
    """One desired value as a caller gives it; ``key`` for 1.6, the rest for 2.x."""

    value: str
    key: str = ""
    component_name: str = ""
    component_instance: str = ""
    evse_id: int | None = None
    connector_id: int | None = None
    variable_name: str = ""
    variable_instance: str = ""
    attribute_type: str = "Actual"

    def ref(self, protocol: str) -> str:
        if protocol == ConfigurationBaseline.Protocol.OCPP16:
            return self.key
        evse = "" if self.evse_id is None else str(self.evse_id)
        connector = "" if self.connector_id is None else str(self.connector_id)
        return "/".join(
            (
                self.component_name,
                self.component_instance,
                evse,
                connector,
                self.variable_name,
                self.variable_instance,
                self.attribute_type or "Actual",
            )
        )


def label(setting: BaselineSetting) -> str:
    """How a person reads a setting: the key, or Component[instance]@evse:connector/Variable."""
    if setting.key:
        return setting.key
    text = setting.component_name
    if setting.component_instance:
        text += f"[{setting.component_instance}]"
    if setting.evse_id is not None:
        text += f"@{setting.evse_id}"
        if setting.connector_id is not None:
            text += f":{setting.connector_id}"
    text += f"/{setting.variable_name}"
    if setting.variable_instance:
        text += f"[{setting.variable_instance}]"
    if setting.attribute_type and setting.attribute_type != "Actual":
        text += f"#{setting.attribute_type}"
    return text


# --- Baselines ----------------------------------------------------------------------------------


def _settings_write(baseline: ConfigurationBaseline, settings: Iterable[SettingIn]) -> None:
    baseline.settings.all().delete()
    BaselineSetting.objects.bulk_create(
        [
            BaselineSetting(
                baseline=baseline,
                ref=item.ref(baseline.protocol),
                key=item.key,
                component_name=item.component_name,
                component_instance=item.component_instance,
                evse_id=item.evse_id,
                connector_id=item.connector_id,
                variable_name=item.variable_name,
                variable_instance=item.variable_instance,
                attribute_type=""
                if baseline.protocol == ConfigurationBaseline.Protocol.OCPP16
                else item.attribute_type or "Actual",
                value=item.value,
            )
            for item in settings
        ]
    )


@transaction.atomic
def baseline_create(
    *,
    organization: Organization,
    name: str,
    vendor: str,
    model: str,
    protocol: str,
    settings: Iterable[SettingIn],
    notes: str = "",
) -> ConfigurationBaseline:
    baseline = ConfigurationBaseline.objects.create(
        organization=organization,
        name=name,
        vendor=vendor.strip(),
        model=model.strip(),
        protocol=protocol,
        notes=notes,
    )
    _settings_write(baseline, settings)
    return baseline


@transaction.atomic
def baseline_update(
    *,
    baseline: ConfigurationBaseline,
    data: dict[str, Any],
    settings: Iterable[SettingIn] | None = None,
) -> ConfigurationBaseline:
    for field in ("name", "vendor", "model", "notes"):
        if field in data:
            setattr(baseline, field, str(data[field]).strip())
    baseline.save()
    if settings is not None:
        _settings_write(baseline, settings)
    return baseline


def baseline_delete(*, baseline: ConfigurationBaseline) -> None:
    baseline.delete()


def chargers_of(baseline: ConfigurationBaseline) -> QuerySet[Charger]:
    """The organization's chargers of the baseline's model that speak its protocol."""
    return Charger.objects.filter(
        organization_id=baseline.organization_id,
        vendor__iexact=baseline.vendor,
        model__iexact=baseline.model,
        ocpp_version__in=VERSIONS[ConfigurationBaseline.Protocol(baseline.protocol)],
    )


def baseline_for(charger: Charger) -> ConfigurationBaseline | None:
    protocol = (
        ConfigurationBaseline.Protocol.OCPP16
        if charger.ocpp_version == "1.6"
        else ConfigurationBaseline.Protocol.OCPP2X
        if charger.ocpp_version
        else None
    )
    if protocol is None or not charger.vendor or not charger.model:
        return None
    return ConfigurationBaseline.objects.filter(
        organization_id=charger.organization_id,
        vendor__iexact=charger.vendor,
        model__iexact=charger.model,
        protocol=protocol,
    ).first()


# --- Drift ---------------------------------------------------------------------------------------


def _reported(charger: Charger, protocol: str) -> tuple[dict[str, drift.Reported], bool]:
    if protocol == ConfigurationBaseline.Protocol.OCPP16:
        keys = ChargerConfigurationKey.objects.filter(charger=charger)
        reported = {
            row.key: drift.Reported(row.value, has_value=row.has_value, readonly=row.readonly)
            for row in keys
        }
        return reported, bool(reported)
    reported = {}
    variables = DeviceVariable.objects.filter(charger=charger).prefetch_related("attributes")
    any_variable = False
    for variable in variables:
        any_variable = True
        for attribute in variable.attributes.all():
            reported[f"{variable.key}/{attribute.type}"] = drift.Reported(
                attribute.value,
                has_value=attribute.has_value,
                readonly=attribute.mutability == "ReadOnly",
            )
    return reported, any_variable


def drift_report(*, charger: Charger, baseline: ConfigurationBaseline) -> drift.DriftReport:
    settings = list(baseline.settings.all())
    reported, ever = _reported(charger, baseline.protocol)
    applied = {
        result.ref: drift.Applied(result.value, result.status, result.detail)
        for result in BaselineResult.objects.filter(charger=charger, baseline=baseline)
    }
    return drift.report(
        [drift.Desired(s.ref, label(s), s.value) for s in settings],
        reported,
        applied,
        ever_reported=ever,
    )


# --- Apply and read -------------------------------------------------------------------------------


def _set_variable(setting: BaselineSetting) -> dict[str, Any]:
    component: dict[str, Any] = {"name": setting.component_name}
    if setting.component_instance:
        component["instance"] = setting.component_instance
    if setting.evse_id is not None:
        component["evse"] = {"id": setting.evse_id}
        if setting.connector_id is not None:
            component["evse"]["connectorId"] = setting.connector_id
    variable: dict[str, Any] = {"name": setting.variable_name}
    if setting.variable_instance:
        variable["instance"] = setting.variable_instance
    return {
        "attributeType": setting.attribute_type or "Actual",
        "attributeValue": setting.value,
        "component": component,
        "variable": variable,
    }


def baseline_apply(
    *,
    baseline: ConfigurationBaseline,
    charger: Charger,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
    deliver_when_offline: bool = False,
) -> list[Command]:
    """Send the charger every baseline value it does not have (read-only ones excepted).

    Raises ``CommandRefused`` (offline, never connected) or ``CommandInvalid``; then nothing was
    sent. Returns the commands, none when the charger is in line.
    """
    report = drift_report(charger=charger, baseline=baseline)
    wanted = {row.ref for row in report.to_apply}
    settings = [s for s in baseline.settings.all() if s.ref in wanted]
    if not settings:
        return []
    who = {"requested_by": requested_by, "api_token": api_token, "system": SYSTEM}
    commands: list[Command] = []
    sent: list[tuple[BaselineSetting, Command]] = []
    with transaction.atomic():
        if baseline.protocol == ConfigurationBaseline.Protocol.OCPP16:
            for setting in settings:
                command = command_services.command_create(
                    charger=charger,
                    action="ChangeConfiguration",
                    payload={"key": setting.key, "value": setting.value},
                    deliver_when_offline=deliver_when_offline,
                    **who,
                )
                commands.append(command)
                sent.append((setting, command))
        else:
            for start in range(0, len(settings), SET_VARIABLES_CHUNK):
                chunk = settings[start : start + SET_VARIABLES_CHUNK]
                command = command_services.command_create(
                    charger=charger,
                    action="SetVariables",
                    payload={"setVariableData": [_set_variable(s) for s in chunk]},
                    deliver_when_offline=deliver_when_offline,
                    **who,
                )
                commands.append(command)
                sent.extend((setting, command) for setting in chunk)
        now = timezone.now()
        BaselineResult.objects.bulk_create(
            [
                BaselineResult(
                    charger=charger,
                    baseline=baseline,
                    ref=setting.ref,
                    value=setting.value,
                    command=command,
                    status="",
                    detail="",
                    updated_at=now,
                )
                for setting, command in sent
            ],
            update_conflicts=True,
            unique_fields=["charger", "baseline", "ref"],
            update_fields=["value", "command", "status", "detail", "updated_at"],
        )
    return commands


def baseline_read(
    *,
    baseline: ConfigurationBaseline,
    charger: Charger,
    requested_by: Any = None,
    api_token: ApiToken | None = None,
) -> Command:
    """Ask the charger for what the baseline compares: its whole 1.6 configuration, or the
    baseline's 2.x variables. Raises ``CommandRefused`` / ``CommandInvalid``."""
    who = {"requested_by": requested_by, "api_token": api_token, "system": SYSTEM}
    if baseline.protocol == ConfigurationBaseline.Protocol.OCPP16:
        return command_services.command_create(
            charger=charger, action="GetConfiguration", payload={}, **who
        )
    data = []
    for setting in baseline.settings.all():
        item = _set_variable(setting)
        item.pop("attributeValue")
        data.append(item)
    return command_services.command_create(
        charger=charger, action="GetVariables", payload={"getVariableData": data}, **who
    )


def baseline_apply_model(*, baseline: ConfigurationBaseline, requested_by: Any = None) -> int:
    """Apply the baseline to every charger of its model, off the request: one task per charger,
    queued for offline ones until they connect. Returns how many chargers."""
    from . import tasks

    pks = list(chargers_of(baseline).values_list("pk", flat=True))
    user_pk = getattr(requested_by, "pk", None)
    for pk in pks:
        transaction.on_commit(
            lambda pk=pk: tasks.baseline_apply.delay(baseline.pk, pk, user_pk)  # type: ignore[misc]
        )
    return len(pks)


# --- Answers ---------------------------------------------------------------------------------------


def _failure(command: Command) -> str:
    return command.error_code or command.state


def baseline_result_record(*, command_pk: int) -> int:
    """A ChangeConfiguration / SetVariables a baseline sent finished: keep each value's answer."""
    results = list(BaselineResult.objects.filter(command_id=command_pk))
    if not results:
        return 0
    command = Command.objects.get(pk=command_pk)
    now = timezone.now()
    if command.action == "ChangeConfiguration":
        status = (
            command.response_status
            if command.state in (CommandState.ACCEPTED, CommandState.REJECTED)
            else _failure(command)
        )
        detail = command.error_description[:200] if not command.response_status else ""
        return BaselineResult.objects.filter(command_id=command_pk).update(
            status=status, detail=detail, updated_at=now
        )
    answers: dict[str, tuple[str, str]] = {}
    if command.state == CommandState.ANSWERED or command.state == CommandState.ACCEPTED:
        from chargers import devicemodel

        for item in (command.response or {}).get("setVariableResult") or []:
            ref = devicemodel.variable_ref(item["component"], item["variable"]).key
            attribute = str(item.get("attributeType") or "Actual")
            info = item.get("attributeStatusInfo") or {}
            answers[f"{ref}/{attribute}"] = (
                str(item.get("attributeStatus", "")),
                str(info.get("reasonCode", ""))[:200],
            )
    for result in results:
        status, detail = answers.get(result.ref, (_failure(command), ""))
        if command.state in (CommandState.ANSWERED, CommandState.ACCEPTED) and (
            result.ref not in answers
        ):
            status, detail = "NoAnswer", "The charger's answer left this value out."
        result.status, result.detail, result.updated_at = status, detail, now
    BaselineResult.objects.bulk_update(results, ["status", "detail", "updated_at"])
    return len(results)
