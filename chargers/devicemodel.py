"""The OCPP 2.x device model of each charger: components, variables, their attributes,
characteristics and monitors, as NotifyReport and NotifyMonitoringReport describe them.

Reports come in parts (``tbc``); each part is upserted on its own, so a report cut short keeps
what arrived. Writes are synchronous and run in one ``database_sync_to_async`` hop per frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import normalize
from .models import DeviceVariable, DeviceVariableAttribute, DeviceVariableMonitor

ATTRIBUTE_DEFAULTS = {
    "type": "Actual",
    "mutability": "ReadWrite",
    "persistent": False,
    "constant": False,
}


@dataclass(frozen=True, slots=True)
class VariableRef:
    """Where a variable sits: component (name, instance, EVSE, connector) and variable."""

    component_name: str
    component_instance: str
    evse_id: int | None
    connector_id: int | None
    variable_name: str
    variable_instance: str

    @property
    def key(self) -> str:
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
            )
        )

    def fields(self) -> dict[str, Any]:
        return {
            "component_name": self.component_name,
            "component_instance": self.component_instance,
            "evse_id": self.evse_id,
            "connector_id": self.connector_id,
            "variable_name": self.variable_name,
            "variable_instance": self.variable_instance,
        }


def variable_ref(component: dict[str, Any], variable: dict[str, Any]) -> VariableRef:
    """The reference of a ``component``/``variable`` pair of a 2.x payload (camelCase keys)."""
    evse = component.get("evse") or {}
    evse_id = evse.get("id")
    connector_id = evse.get("connectorId")
    if evse_id is not None:
        normalize.check_integer(evse_id, "evse id")
    if connector_id is not None:
        normalize.check_integer(connector_id, "connectorId")
    return VariableRef(
        component_name=str(component["name"]),
        component_instance=str(component.get("instance") or ""),
        evse_id=evse_id,
        connector_id=connector_id,
        variable_name=str(variable["name"]),
        variable_instance=str(variable.get("instance") or ""),
    )


def _limit(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None
    # Larger than the column holds: keep the report, leave the limit out.
    return number if number.is_finite() and abs(number) < Decimal(10) ** 18 else None


def _variables_upsert(
    charger_pk: int,
    rows: Iterable[tuple[VariableRef, dict[str, Any]]],
    *,
    update_fields: list[str],
) -> dict[str, int]:
    """Create or update variables; returns their pks by key."""
    by_key: dict[str, DeviceVariable] = {}
    for ref, extra in rows:
        by_key[ref.key] = DeviceVariable(
            charger_id=charger_pk, key=ref.key, **ref.fields(), **extra
        )
    if not by_key:
        return {}
    if update_fields:
        DeviceVariable.objects.bulk_create(
            list(by_key.values()),
            update_conflicts=True,
            unique_fields=["charger", "key"],
            update_fields=update_fields,
        )
    else:
        DeviceVariable.objects.bulk_create(list(by_key.values()), ignore_conflicts=True)
    return dict(
        DeviceVariable.objects.filter(charger_id=charger_pk, key__in=list(by_key)).values_list(
            "key", "pk"
        )
    )


def device_report_store(
    *, charger_pk: int, request_id: int, report_data: list[dict[str, Any]]
) -> int:
    """Store one part of a NotifyReport; returns how many variables it described."""
    now = timezone.now()
    variables: list[tuple[VariableRef, dict[str, Any]]] = []
    attributes: dict[str, list[dict[str, Any]]] = {}
    for item in report_data:
        ref = variable_ref(item["component"], item["variable"])
        characteristics = item.get("variableCharacteristics") or {}
        variables.append(
            (
                ref,
                {
                    "unit": str(characteristics.get("unit") or ""),
                    "data_type": str(characteristics.get("dataType") or ""),
                    "min_limit": _limit(characteristics.get("minLimit")),
                    "max_limit": _limit(characteristics.get("maxLimit")),
                    "max_elements": characteristics.get("maxElements"),
                    "values_list": str(characteristics.get("valuesList") or ""),
                    "supports_monitoring": characteristics.get("supportsMonitoring"),
                    "report_request_id": request_id,
                    "reported_at": now,
                },
            )
        )
        attributes[ref.key] = list(item.get("variableAttribute") or [])
    with transaction.atomic():
        pks = _variables_upsert(
            charger_pk,
            variables,
            update_fields=[
                "unit",
                "data_type",
                "min_limit",
                "max_limit",
                "max_elements",
                "values_list",
                "supports_monitoring",
                "report_request_id",
                "reported_at",
            ],
        )
        rows: dict[tuple[int, str], DeviceVariableAttribute] = {}
        for key, items in attributes.items():
            for attribute in items:
                merged = {**ATTRIBUTE_DEFAULTS, **attribute}
                kind = str(merged["type"])
                rows[(pks[key], kind)] = DeviceVariableAttribute(
                    variable_id=pks[key],
                    type=kind,
                    value=str(attribute.get("value", "")),
                    has_value="value" in attribute,
                    mutability=str(merged["mutability"]),
                    persistent=bool(merged["persistent"]),
                    constant=bool(merged["constant"]),
                )
        if rows:
            DeviceVariableAttribute.objects.bulk_create(
                list(rows.values()),
                update_conflicts=True,
                unique_fields=["variable", "type"],
                update_fields=["value", "has_value", "mutability", "persistent", "constant"],
            )
    return len(variables)


def device_monitoring_store(
    *, charger_pk: int, request_id: int, monitors: list[dict[str, Any]]
) -> int:
    """Store one part of a NotifyMonitoringReport; returns how many monitors it described."""
    now = timezone.now()
    refs = [(variable_ref(item["component"], item["variable"]), item) for item in monitors]
    with transaction.atomic():
        pks = _variables_upsert(charger_pk, [(ref, {}) for ref, _ in refs], update_fields=[])
        rows: dict[tuple[int, int], DeviceVariableMonitor] = {}
        for ref, item in refs:
            for monitor in item.get("variableMonitoring") or []:
                monitor_id = normalize.check_integer(monitor["id"], "monitor id", maximum=2**63 - 1)
                value = _limit(monitor["value"])
                if value is None:
                    raise normalize.NormalizationError(f"monitor {monitor_id}: value out of range")
                rows[(pks[ref.key], monitor_id)] = DeviceVariableMonitor(
                    variable_id=pks[ref.key],
                    monitor_id=monitor_id,
                    type=str(monitor["type"]),
                    value=value,
                    severity=normalize.check_integer(monitor["severity"], "severity", maximum=9),
                    transaction=bool(monitor.get("transaction", False)),
                    report_request_id=request_id,
                    reported_at=now,
                )
        if rows:
            DeviceVariableMonitor.objects.bulk_create(
                list(rows.values()),
                update_conflicts=True,
                unique_fields=["variable", "monitor_id"],
                update_fields=[
                    "type",
                    "value",
                    "severity",
                    "transaction",
                    "report_request_id",
                    "reported_at",
                ],
            )
    return len(rows)


def device_actual_values_update(*, charger_pk: int, values: list[tuple[VariableRef, str]]) -> int:
    """Set the Actual value of variables already in the device model (from NotifyEvent)."""
    updated = 0
    keys = {ref.key: value for ref, value in values}
    for pk, key in DeviceVariable.objects.filter(
        charger_id=charger_pk, key__in=list(keys)
    ).values_list("pk", "key"):
        updated += DeviceVariableAttribute.objects.filter(variable_id=pk, type="Actual").update(
            value=keys[key], has_value=True
        )
    return updated
