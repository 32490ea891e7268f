"""An offline charger raises one alert, not a storm: a real OCPP 1.6 charger with two charging
sessions drops its connection from the real server, stays away past the grace period, and comes
back. Notifications go to a real local HTTP server as signed webhooks.

On the embedded default the server runs the periodic alert check and the notification sweep on
its own loop; with ``REDIS_URL`` a real Celery worker with beat runs them, as in production.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from chargers import services
from chargers.alert_rules import webhook_signature_valid
from chargers.models import Alert, AlertDelivery, Charger, WebhookEndpoint
from tests.chargers.webhook_receiver import Receiver, webhook_receiver
from tests.conftest import CHARGER_PASSWORD, ServerProcess, wait_until_quiet
from tests.cpms.test_celery import python_process

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRACE = 2.0
ALERT_ENV = {
    "CPMS_ALERT_OFFLINE_GRACE": str(GRACE),
    "CPMS_ALERT_SILENT_SESSION": "6",
    "CPMS_ALERT_DEBOUNCE": "0",
    "CPMS_ALERT_CHECK_INTERVAL": "0.5",
    "CPMS_ALERT_DELIVERY_INTERVAL": "0.5",
    "CPMS_WEBHOOK_RETRY_BASE": "1",
}
SECRET = "whsec_e2e-offline-secret"


def wait_for(
    condition: Callable[[], Any], describe: Callable[[], str], timeout: float = 90.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(describe())


@pytest.fixture
def alerting_server(transactional_db: Any) -> Iterator[ServerProcess]:
    """A server (and, with Redis, a Celery worker with beat) with short alert periods."""
    with ExitStack() as stack:
        server = ServerProcess(extra_env=ALERT_ENV)
        stack.callback(server.stop)
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            worker_log = stack.enter_context(
                celery_process_with_env(
                    "worker",
                    "--beat",
                    "--pool",
                    "solo",
                    "--purge",
                    "--loglevel",
                    "info",
                    "--without-mingle",
                    "--without-gossip",
                    "--without-heartbeat",
                    "--schedule",
                    f"/tmp/cpms-beat-{uuid.uuid4().hex[:8]}",
                )
            )
            wait_for(lambda: "ready." in worker_log(), lambda: f"no worker:\n{worker_log()}")
        yield server
        wait_until_quiet()


def celery_process_with_env(*args: str) -> Any:
    """``celery -A cpms <args>`` on the test database, with the alert periods."""
    return python_process("-m", "celery", "-A", "cpms", *args, env=ALERT_ENV)


class Station:
    """An OCPP 1.6J charger over a real WebSocket."""

    def __init__(self, ws: ClientConnection, identity: str):
        self.ws = ws
        self.identity = identity
        self.ids = itertools.count(1)

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        message_id = f"{self.identity}-{next(self.ids)}"
        self.ws.send(json.dumps([2, message_id, action, payload]))
        reply = json.loads(self.ws.recv(timeout=30))
        assert reply[0] == 3 and reply[1] == message_id, reply
        return reply[2]

    def boot(self) -> None:
        result = self.call(
            "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "AC-22"}
        )
        assert result["status"] == "Accepted"

    def status(self, connector: int, status: str) -> None:
        self.call(
            "StatusNotification",
            {
                "connectorId": connector,
                "errorCode": "NoError",
                "status": status,
                "timestamp": now(),
            },
        )

    def start(self, connector: int, meter: int) -> int:
        result = self.call(
            "StartTransaction",
            {
                "connectorId": connector,
                "idTag": f"TAG-{connector}",
                "meterStart": meter,
                "timestamp": now(),
            },
        )
        assert result["idTagInfo"]["status"] == "Accepted"
        return int(result["transactionId"])

    def meter(self, connector: int, transaction_id: int, wh: int) -> None:
        self.call(
            "MeterValues",
            {
                "connectorId": connector,
                "transactionId": transaction_id,
                "meterValue": [
                    {
                        "timestamp": now(),
                        "sampledValue": [
                            {
                                "value": str(wh),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            }
                        ],
                    }
                ],
            },
        )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def station(server: ServerProcess, identity: str) -> Any:
    token = base64.b64encode(f"{identity}:{CHARGER_PASSWORD}".encode()).decode()
    return connect(
        server.ocpp_url + identity,
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": f"Basic {token}"},
    )


def raised_events(receiver: Receiver) -> list[tuple[str, str, str]]:
    out = []
    with receiver.lock:
        requests = list(receiver.received)
    for request in requests:
        body = json.loads(request.body)
        out.append((body["event"], body["alert"]["kind"], body["alert"]["charger"]))
    return out


def test_an_offline_charger_raises_one_alert_not_a_storm(
    alerting_server: ServerProcess, charger: Charger
) -> None:
    for connector in (1, 2):
        services.id_token_create(organization=charger.organization, token=f"TAG-{connector}")
    with webhook_receiver() as receiver:
        WebhookEndpoint.objects.create(
            organization=charger.organization, name="ops", url=receiver.url, secret=SECRET
        )
        with station(alerting_server, charger.identity) as ws:
            cp = Station(ws, charger.identity)
            cp.boot()
            transactions = {}
            for connector in (1, 2):
                cp.status(connector, "Preparing")
                transactions[connector] = cp.start(connector, 1000)
                cp.status(connector, "Charging")
            for connector, transaction_id in transactions.items():
                cp.meter(connector, transaction_id, 1500)
        # The socket is gone; the charger stays away.

        offline = wait_for(
            lambda: Alert.objects.filter(charger=charger, kind="offline", state="open").first(),
            lambda: (
                f"no offline alert; alerts: {list(Alert.objects.values())}\n{alerting_server.log()}"
            ),
        )
        assert offline.mttd_seconds is not None and offline.mttd_seconds >= GRACE
        assert offline.severity == "critical" and not offline.suppressed

        # Both sessions go silent while the charger is away: recorded, suppressed, not notified.
        silent = wait_for(
            lambda: (
                list(Alert.objects.filter(charger=charger, kind="silent_session"))
                if Alert.objects.filter(charger=charger, kind="silent_session").count() == 2
                else None
            ),
            lambda: f"silent sessions not recorded: {list(Alert.objects.values())}",
        )
        assert sorted(a.connector_id for a in silent) == [1, 2]
        assert all(a.suppressed and a.suppressed_by_id == offline.pk for a in silent)

        requests = receiver.wait_for(1)
        wait_for(
            lambda: not AlertDelivery.objects.exclude(status="delivered").exists(),
            lambda: f"deliveries unfinished: {list(AlertDelivery.objects.values())}",
        )
        assert raised_events(receiver) == [("alert.raised", "offline", charger.identity)]
        first = requests[0]
        assert webhook_signature_valid(
            SECRET,
            int(first.headers["x-cpms-timestamp"]),
            first.body,
            first.headers["x-cpms-signature"],
        )
        notified = Alert.objects.filter(charger=charger, suppressed=False)
        assert list(notified.values_list("kind", flat=True)) == ["offline"]

        # Back: the outage resolves, with its time to repair.
        with station(alerting_server, charger.identity) as ws:
            cp = Station(ws, charger.identity)
            cp.boot()
            for connector, transaction_id in transactions.items():
                cp.meter(connector, transaction_id, 1600)
            wait_for(
                lambda: Alert.objects.filter(pk=offline.pk, state="resolved").exists(),
                lambda: f"offline alert not resolved: {list(Alert.objects.values())}",
            )
            offline.refresh_from_db()
            assert offline.mttr_seconds is not None and offline.mttr_seconds > 0
            assert offline.resolution == "cleared"
            # The sessions speak again: their silent alerts clear at the next check.
            wait_for(
                lambda: not Alert.objects.filter(kind="silent_session", state="open").exists(),
                lambda: f"silent sessions still open: {list(Alert.objects.values())}",
            )

        receiver.wait_for(2)
        wait_for(
            lambda: not AlertDelivery.objects.exclude(status="delivered").exists(),
            lambda: f"deliveries unfinished: {list(AlertDelivery.objects.values())}",
        )
        assert raised_events(receiver) == [
            ("alert.raised", "offline", charger.identity),
            ("alert.resolved", "offline", charger.identity),
        ]
        resolved = json.loads(receiver.received[1].body)
        assert resolved["alert"]["mttr_seconds"] == offline.mttr_seconds
        assert Alert.objects.filter(charger=charger).count() == 3
