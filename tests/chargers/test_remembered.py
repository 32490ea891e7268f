"""Facts about chargers that receivers remember: read together, kept a while, then read again."""

from __future__ import annotations

from typing import Any

import pytest

from chargers import remembered
from chargers.remembered import Remembered


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(remembered.time, "monotonic", clock)
    return clock


def counting(facts: dict[str, Any]) -> tuple[list[set[str]], Any]:
    reads: list[set[str]] = []

    def read(identities: set[str]) -> dict[str, Any]:
        reads.append(set(identities))
        return {identity: facts[identity] for identity in identities if identity in facts}

    return reads, read


def test_a_batch_reads_only_what_it_does_not_know_in_one_call(clock: Clock) -> None:
    reads, read = counting({"A": 1, "B": 2, "C": 3})
    facts = Remembered(read, seconds=60, missing=0)
    assert facts.get_many(["A", "B"]) == {"A": 1, "B": 2}
    assert facts.get_many(["A", "B", "C", "GONE"]) == {"A": 1, "B": 2, "C": 3, "GONE": 0}
    assert reads == [{"A", "B"}, {"C", "GONE"}]
    assert facts.get("GONE") == 0  # a charger the read leaves out is remembered as missing
    assert len(reads) == 2


def test_facts_expire_spread_around_their_interval(clock: Clock) -> None:
    reads, read = counting({f"C{n}": n for n in range(200)})
    facts = Remembered(read, seconds=100, missing=None)
    everyone = [f"C{n}" for n in range(200)]
    facts.get_many(everyone)
    clock.now += 74.9  # none expires before three quarters of the interval
    facts.get_many(everyone)
    assert len(reads) == 1
    clock.now += 25  # at the interval, some have expired and some not
    facts.get_many(everyone)
    assert 0 < len(reads[1]) < 200
    clock.now += 25.2  # past a quarter more, every fact read at the start has expired
    facts.get_many(everyone)
    assert reads[2] | reads[1] == set(everyone)


def test_forget_and_read_afresh(clock: Clock) -> None:
    values = {"A": 1}
    _, read = counting(values)
    facts = Remembered(read, seconds=60, missing=0)
    assert facts.get("A") == 1
    values["A"] = 2
    assert facts.get("A") == 1
    facts.forget("A")
    assert facts.get("A") == 2
    values["A"] = 3
    assert facts.read({"A"}) == {"A": 3}
    assert facts.get("A") == 3
    facts.forget()
    assert len(facts) == 0


def test_past_its_size_the_longest_kept_go_first(clock: Clock) -> None:
    reads, read = counting({f"C{n}": n for n in range(10)})
    facts = Remembered(read, seconds=60, missing=None, size=3)
    for n in range(5):
        facts.get(f"C{n}")
    assert len(facts) == 3
    facts.get_many(["C2", "C3", "C4"])
    assert len(reads) == 5  # the last three are still known
    facts.get("C0")
    assert reads[-1] == {"C0"}
    facts.get("C2")  # C2 went when C0 came back
    assert reads[-1] == {"C2"}
