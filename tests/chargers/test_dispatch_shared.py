"""What the dispatcher works out once instead of per frame or per connection: key spellings
(exactly as the ``ocpp`` package spells them) and each handler class's route map."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case

from chargers.consumers import VERSIONS
from chargers.dispatch import Dispatcher, camel_keys, snake_keys

# Keys like the specs' (and the special cases the package spells by hand), and any text.
keys = st.one_of(
    st.sampled_from(
        [
            "connectorId",
            "meterValue",
            "sampledValue",
            "ocppCSMSURL",
            "evseV2XEnergy",
            "V2GCertificate",
            "SoC",
            "soc_limit_reached",
            "csms_url",
            "responder_url",
            "socket_id",
            "id_tag_info",
            "iso15118",
        ]
    ),
    st.text(alphabet="abcXYZ_019V2GSoc", max_size=12),
    st.text(max_size=6),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_keys_are_spelled_as_the_ocpp_package_spells_them(value):
    assert snake_keys(value) == camel_to_snake_case(value)
    assert camel_keys(value) == snake_to_camel_case(value)
    assert snake_keys(value) == camel_to_snake_case(value)  # and again, from the cache


def test_connections_of_one_version_share_one_route_map():
    for version, handler_class, known_actions in VERSIONS.values():
        one, two = (object.__new__(handler_class) for _ in range(2))
        dispatcher_class = getattr(handler_class, "dispatcher_class", Dispatcher)
        first = dispatcher_class(one, version=version, known_actions=known_actions)
        second = dispatcher_class(two, version=version, known_actions=known_actions)
        assert first.route_map is second.route_map
        assert "BootNotification" in first.route_map
        # Plain functions of the class, called with each connection's own handler object.
        assert (
            first.route_map["BootNotification"]["_on_action"] is handler_class.on_boot_notification
        )
