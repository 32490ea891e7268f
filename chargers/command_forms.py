"""Dashboard forms that send commands to a charger: one form per operation, each turning what an
operator fills in into the OCPP request of the charger's version (1.6, or 2.0.1 and 2.1).

The forms check what an operator can get wrong (a missing tag, a connector 0 to unlock); the
command service then checks the request against the OCPP schema before anything is sent.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from django import forms

from .models import Charger, IdToken, Session, SessionState

V16 = "1.6"

TRIGGERS_16 = [
    "StatusNotification",
    "Heartbeat",
    "BootNotification",
    "MeterValues",
    "FirmwareStatusNotification",
    "DiagnosticsStatusNotification",
]
TRIGGERS_2X = [
    "StatusNotification",
    "Heartbeat",
    "BootNotification",
    "MeterValues",
    "TransactionEvent",
    "FirmwareStatusNotification",
    "LogStatusNotification",
]


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def _choose(field: forms.Field, choices: list[tuple[Any, str]]) -> None:
    assert isinstance(field, forms.ChoiceField)
    field.choices = choices


class CommandForm(forms.Form):
    """One operation on one charger; ``command()`` gives its (action, payload)."""

    key: ClassVar[str]
    title: ClassVar[str]
    button: ClassVar[str] = "Send"
    versions: ClassVar[frozenset[str]] = frozenset({"1.6", "2.0.1", "2.1"})

    deliver_when_offline = forms.BooleanField(
        required=False, label="If offline, send when it connects"
    )

    def __init__(self, *args: Any, charger: Charger, **kwargs: Any):
        kwargs.setdefault("prefix", self.key)
        super().__init__(*args, **kwargs)
        self.charger = charger
        self.version = charger.ocpp_version or V16
        self.adapt()

    @property
    def v16(self) -> bool:
        return self.version == V16

    def adapt(self) -> None:
        """Fit the fields to the charger's OCPP version."""

    def command(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError


class ResetForm(CommandForm):
    key = "reset"
    title = "Reset"
    button = "Reset"
    type = forms.ChoiceField(label="Type")

    def adapt(self) -> None:
        _choose(
            self.fields["type"],
            [("Soft", "Soft (restart the software)"), ("Hard", "Hard (reboot)")]
            if self.v16
            else [("OnIdle", "When idle"), ("Immediate", "Immediately")],
        )

    def command(self) -> tuple[str, dict[str, Any]]:
        return "Reset", {"type": self.cleaned_data["type"]}


class UnlockConnectorForm(CommandForm):
    key = "unlock"
    title = "Unlock connector"
    button = "Unlock"
    connector = forms.IntegerField(min_value=1, max_value=999, initial=1, label="Connector")
    evse = forms.IntegerField(min_value=1, max_value=999, initial=1, label="EVSE")

    def adapt(self) -> None:
        if self.v16:
            del self.fields["evse"]
        else:
            self.fields["connector"].help_text = "Its number within the EVSE"

    def command(self) -> tuple[str, dict[str, Any]]:
        data = self.cleaned_data
        if self.v16:
            return "UnlockConnector", {"connectorId": data["connector"]}
        return "UnlockConnector", {"evseId": data["evse"], "connectorId": data["connector"]}


class RemoteStartForm(CommandForm):
    key = "remote_start"
    title = "Remote start"
    button = "Start"
    id_tag = forms.CharField(max_length=36, label="Id tag", help_text="Whose session it is")
    connector = forms.IntegerField(
        min_value=1,
        max_value=999,
        required=False,
        label="Connector",
        help_text="Empty: the charger picks one",
    )

    def adapt(self) -> None:
        if not self.v16:
            self.fields["connector"].label = "EVSE"

    def clean_id_tag(self) -> str:
        value = self.cleaned_data["id_tag"].strip()
        if not value or not value.isprintable() or not value.isascii() or " " in value:
            raise forms.ValidationError("An id tag is printable ASCII with no spaces.")
        if self.v16 and len(value) > 20:
            raise forms.ValidationError("OCPP 1.6 id tags have at most 20 characters.")
        return value

    def command(self) -> tuple[str, dict[str, Any]]:
        tag, where = self.cleaned_data["id_tag"], self.cleaned_data.get("connector")
        if self.v16:
            payload: dict[str, Any] = {"idTag": tag}
            if where:
                payload["connectorId"] = where
            return "RemoteStartTransaction", payload
        known = IdToken.objects.filter(
            organization_id=self.charger.organization_id, token=tag
        ).first()
        payload = {
            "idToken": {"idToken": tag, "type": known.type if known else "Central"},
            # Comes back in the transaction's events and links it to this request.
            "remoteStartId": secrets.randbelow(2**31 - 1) + 1,
        }
        if where:
            payload["evseId"] = where
        return "RequestStartTransaction", payload


class RemoteStopForm(CommandForm):
    key = "remote_stop"
    title = "Remote stop"
    button = "Stop"
    session = forms.ChoiceField(label="Session")

    def adapt(self) -> None:
        active = Session.objects.filter(charger=self.charger, state=SessionState.ACTIVE).order_by(
            "connector_number"
        )
        _choose(
            self.fields["session"],
            [
                (
                    s.transaction_id,
                    f"Connector {s.connector_number}: {s.transaction_id} ({s.id_tag or 'no tag'})",
                )
                for s in active
            ],
        )
        if not active:
            self.fields["session"].help_text = "No session is running."

    def clean_session(self) -> str:
        value = self.cleaned_data["session"]
        if self.v16 and not value.lstrip("-").isdigit():
            raise forms.ValidationError("This session has no 1.6 transaction id.")
        return value

    def command(self) -> tuple[str, dict[str, Any]]:
        transaction_id = self.cleaned_data["session"]
        if self.v16:
            return "RemoteStopTransaction", {"transactionId": int(transaction_id)}
        return "RequestStopTransaction", {"transactionId": transaction_id}


class ChangeAvailabilityForm(CommandForm):
    key = "availability"
    title = "Change availability"
    connector = forms.IntegerField(
        min_value=0, max_value=999, initial=0, label="Connector", help_text="0: the whole charger"
    )
    type = forms.ChoiceField(
        choices=[("Inoperative", "Inoperative"), ("Operative", "Operative")], label="Make it"
    )

    def adapt(self) -> None:
        if not self.v16:
            self.fields["connector"].label = "EVSE"

    def command(self) -> tuple[str, dict[str, Any]]:
        where, kind = self.cleaned_data["connector"], self.cleaned_data["type"]
        if self.v16:
            return "ChangeAvailability", {"connectorId": where, "type": kind}
        payload: dict[str, Any] = {"operationalStatus": kind}
        if where:
            payload["evse"] = {"id": where}
        return "ChangeAvailability", payload


class TriggerMessageForm(CommandForm):
    key = "trigger"
    title = "Trigger a message"
    button = "Trigger"
    message = forms.ChoiceField(label="Message")
    connector = forms.IntegerField(min_value=1, max_value=999, required=False, label="Connector")

    def adapt(self) -> None:
        _choose(self.fields["message"], _choices(TRIGGERS_16 if self.v16 else TRIGGERS_2X))
        if not self.v16:
            self.fields["connector"].label = "EVSE"

    def command(self) -> tuple[str, dict[str, Any]]:
        message, where = self.cleaned_data["message"], self.cleaned_data.get("connector")
        payload: dict[str, Any] = {"requestedMessage": message}
        if where:
            payload.update({"connectorId": where} if self.v16 else {"evse": {"id": where}})
        return "TriggerMessage", payload


class GetConfigurationForm(CommandForm):
    key = "get_configuration"
    title = "Get configuration"
    button = "Get"
    versions = frozenset({V16})
    keys = forms.CharField(
        max_length=2000, required=False, label="Keys", help_text="Comma-separated; empty: every key"
    )

    def clean_keys(self) -> list[str]:
        keys = [key.strip() for key in self.cleaned_data["keys"].split(",") if key.strip()]
        if any(len(key) > 50 for key in keys):
            raise forms.ValidationError("A configuration key has at most 50 characters.")
        return keys

    def command(self) -> tuple[str, dict[str, Any]]:
        keys = self.cleaned_data["keys"]
        return "GetConfiguration", {"key": keys} if keys else {}


class ChangeConfigurationForm(CommandForm):
    key = "change_configuration"
    title = "Change configuration"
    button = "Change"
    versions = frozenset({V16})
    config_key = forms.CharField(max_length=50, label="Key")
    value = forms.CharField(max_length=500, label="Value", strip=False)

    def command(self) -> tuple[str, dict[str, Any]]:
        return "ChangeConfiguration", {
            "key": self.cleaned_data["config_key"].strip(),
            "value": self.cleaned_data["value"],
        }


class _VariableForm(CommandForm):
    versions = frozenset({"2.0.1", "2.1"})
    component = forms.CharField(max_length=50, label="Component", help_text="e.g. OCPPCommCtrlr")
    variable = forms.CharField(max_length=50, label="Variable", help_text="e.g. HeartbeatInterval")

    def target(self) -> dict[str, Any]:
        return {
            "component": {"name": self.cleaned_data["component"].strip()},
            "variable": {"name": self.cleaned_data["variable"].strip()},
        }


class GetVariablesForm(_VariableForm):
    key = "get_variables"
    title = "Get a variable"
    button = "Get"

    def command(self) -> tuple[str, dict[str, Any]]:
        return "GetVariables", {"getVariableData": [self.target()]}


class SetVariablesForm(_VariableForm):
    key = "set_variables"
    title = "Set a variable"
    button = "Set"
    value = forms.CharField(max_length=1000, label="Value", strip=False)

    def command(self) -> tuple[str, dict[str, Any]]:
        return "SetVariables", {
            "setVariableData": [{"attributeValue": self.cleaned_data["value"], **self.target()}]
        }


class ClearCacheForm(CommandForm):
    key = "clear_cache"
    title = "Clear the authorization cache"
    button = "Clear cache"

    def command(self) -> tuple[str, dict[str, Any]]:
        return "ClearCache", {}


FORMS: list[type[CommandForm]] = [
    ResetForm,
    UnlockConnectorForm,
    RemoteStartForm,
    RemoteStopForm,
    ChangeAvailabilityForm,
    TriggerMessageForm,
    GetConfigurationForm,
    ChangeConfigurationForm,
    GetVariablesForm,
    SetVariablesForm,
    ClearCacheForm,
]
FORMS_BY_KEY = {form.key: form for form in FORMS}


def forms_for(charger: Charger) -> list[type[CommandForm]]:
    version = charger.ocpp_version or V16
    return [form for form in FORMS if version in form.versions]


# --- Bulk commands on the chargers list -----------------------------------------------------------

BULK_ACTIONS = {
    "reset_soft": "Reset (soft)",
    "reset_hard": "Reset (hard)",
    "trigger_status": "Trigger StatusNotification",
    "trigger_heartbeat": "Trigger Heartbeat",
}


def bulk_command(kind: str, version: str) -> tuple[str, dict[str, Any]]:
    """The request a bulk action makes of a charger of ``version``."""
    if kind in ("reset_soft", "reset_hard"):
        soft = kind == "reset_soft"
        if version == V16:
            return "Reset", {"type": "Soft" if soft else "Hard"}
        return "Reset", {"type": "OnIdle" if soft else "Immediate"}
    requested = "StatusNotification" if kind == "trigger_status" else "Heartbeat"
    return "TriggerMessage", {"requestedMessage": requested}


class BulkCommandForm(forms.Form):
    operation = forms.ChoiceField(choices=list(BULK_ACTIONS.items()), label="Command")
    chargers = forms.TypedMultipleChoiceField(coerce=int, label="Chargers")
    deliver_when_offline = forms.BooleanField(
        required=False, label="If offline, send when they connect"
    )

    def __init__(self, *args: Any, chargers: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _choose(self.fields["chargers"], list(chargers.values_list("pk", "identity")))
        self.fields["chargers"].error_messages["required"] = "Select at least one charger."
