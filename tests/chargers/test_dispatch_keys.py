"""The dispatcher's key conversion spells keys exactly as the ``ocpp`` package does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case

from chargers.dispatch import camel_keys, snake_keys

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
