"""What receivers of domain events read about a charger, remembered for a while.

A receiver that acts on every meter event needs a fact about the event's charger (does it show
cost, is its site's load managed). Read for each event, that is a query per meter value; read
once per charger and then remembered, it is a query per charger and interval. ``Remembered``
goes one step further: it reads the facts of every charger of a batch that it does not know (or
knows too long) in one call, and lets each fact expire a little earlier or later than the
others, so that a fleet that connected in one storm is not read again all in one batch.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")


class Remembered(Generic[V]):
    """Facts per charger identity, read by ``read`` (identities to facts, one call for many;
    an identity it leaves out gets ``missing``) and kept ``seconds`` on average (each within a
    quarter of it either way). At most ``size`` are kept; past that the longest kept go first.
    Safe to use from several threads; a read runs outside the lock."""

    def __init__(
        self,
        read: Callable[[set[str]], Mapping[str, V]],
        *,
        seconds: float,
        missing: V,
        size: int = 200_000,
    ) -> None:
        self._read = read
        self.seconds = seconds
        self.missing = missing
        self.size = size
        self._facts: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._random = random.Random()

    def get(self, identity: str) -> V:
        return self.get_many((identity,))[identity]

    def get_many(self, identities: Iterable[str]) -> dict[str, V]:
        """The fact of each charger; those not known, or known too long, read in one call."""
        now = time.monotonic()
        found: dict[str, V] = {}
        stale: set[str] = set()
        with self._lock:
            for identity in identities:
                hit = self._facts.get(identity)
                if hit is not None and hit[0] > now:
                    found[identity] = hit[1]
                else:
                    stale.add(identity)
        if stale:
            found.update(self.read(stale))
        return found

    def read(self, identities: set[str]) -> dict[str, V]:
        """Read these chargers' facts afresh, and remember them."""
        if not identities:
            return {}
        read = self._read(identities)
        facts = {identity: read.get(identity, self.missing) for identity in identities}
        self.remember(facts)
        return facts

    def remember(self, facts: Mapping[str, V]) -> None:
        now = time.monotonic()
        with self._lock:
            for identity, fact in facts.items():
                expires = now + self.seconds * self._random.uniform(0.75, 1.25)
                self._facts[identity] = (expires, fact)
                self._facts.move_to_end(identity)
            while len(self._facts) > self.size:
                self._facts.popitem(last=False)

    def forget(self, identity: str | None = None) -> None:
        """Forget one charger's fact (it connected or booted: it may have changed), or all."""
        with self._lock:
            if identity is None:
                self._facts.clear()
            else:
                self._facts.pop(identity, None)

    def __len__(self) -> int:
        return len(self._facts)
