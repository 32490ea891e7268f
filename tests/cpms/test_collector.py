"""The server's garbage collector: its thresholds come from ``CPMS_GC_THRESHOLDS``, what start-up
made is left out of later collections, start-up's garbage is not kept for good, and every
collection's pause is counted (a long one logged)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from cpms import metrics, runtime


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process whose collector has not been tuned yet; the suite's collector as it was, after."""
    thresholds = gc.get_threshold()
    monkeypatch.setattr(runtime, "_collector_tuned", False)
    callbacks = list(gc.callbacks)
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.callbacks[:] = callbacks


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_thresholds_are_set_and_start_up_is_frozen_once(untuned, settings):
    settings.CPMS_GC_THRESHOLDS = [12345, 7, 30]
    start_up = Cycle()
    runtime.tune_garbage_collector()
    assert gc.get_threshold() == (12345, 7, 30)
    assert gc.get_freeze_count() > 0
    # Frozen: in no generation a collection walks.
    assert not any(o is start_up for generation in range(3) for o in gc.get_objects(generation))
    # Once per process: a second server loop changes nothing.
    settings.CPMS_GC_THRESHOLDS = [700, 10, 10]
    runtime.tune_garbage_collector()
    assert gc.get_threshold() == (12345, 7, 30)


def test_the_garbage_of_start_up_is_collected_before_the_rest_is_frozen(untuned):
    collected = []
    cycle = Cycle()
    gc.callbacks.append(lambda phase, info: collected.append(info["collected"]))
    try:
        del cycle
        runtime.tune_garbage_collector()
    finally:
        gc.callbacks.pop()
    assert sum(collected) >= 1


def test_empty_thresholds_keep_cpythons(untuned, settings):
    gc.set_threshold(700, 10, 10)
    settings.CPMS_GC_THRESHOLDS = []
    runtime.tune_garbage_collector()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() > 0


def pauses(generation: int) -> float:
    """How many collections of ``generation`` the histogram has counted."""
    return next(
        sample.value
        for family in metrics.gc_pauses.collect()
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels["generation"] == str(generation)
    )


def test_every_collection_is_counted_and_a_long_one_logged(untuned, settings, caplog):
    settings.CPMS_GC_WARN_SECONDS = 3600.0
    runtime.tune_garbage_collector()
    before = pauses(1), pauses(2)
    with caplog.at_level(logging.WARNING, logger="cpms.runtime"):
        gc.collect(1)
        gc.collect(2)
        assert (pauses(1), pauses(2)) == (before[0] + 1, before[1] + 1)
        assert not caplog.records
        settings.CPMS_GC_WARN_SECONDS = 0.0
        gc.collect(1)
    assert any(
        record.getMessage().startswith("a garbage collection of generation 1 stopped")
        for record in caplog.records
    )
