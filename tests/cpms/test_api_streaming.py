"""Streamed API responses: under ASGI the rows are pulled one chunk at a time from the request's
thread (Django would otherwise read a synchronous iterator whole before sending a byte)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
from django.db import DatabaseError
from django.test import AsyncRequestFactory, RequestFactory
from rest_framework.request import Request

from cpms.rest import streaming_response


class Chunks:
    """A chunk generator that records how far it has been read."""

    def __init__(self, count: int):
        self.count = count
        self.produced = 0
        self.closed = False

    def __iter__(self) -> Iterator[str]:
        try:
            for n in range(self.count):
                self.produced += 1
                yield f"chunk {n}\n"
        finally:
            self.closed = True


async def test_under_asgi_chunks_are_pulled_one_at_a_time() -> None:
    chunks = Chunks(5)
    request = Request(AsyncRequestFactory().get("/api/v1/frames/export.ndjson"))
    response = streaming_response(
        request, iter(chunks), content_type="application/x-ndjson", filename="f"
    )
    assert response.is_async
    received = []
    async for part in response:
        received.append(part)
        assert chunks.produced == len(received)
    assert received == [f"chunk {n}\n".encode() for n in range(5)]
    assert chunks.closed


async def test_a_client_that_goes_away_closes_the_generator() -> None:
    chunks = Chunks(100)
    request = Request(AsyncRequestFactory().get("/api/v1/frames/export.ndjson"))
    response = streaming_response(
        request, iter(chunks), content_type="application/x-ndjson", filename="f"
    )
    content = aiter(response)
    await anext(content)
    # What the ASGI server does when the client disconnects: the response is dropped mid-way.
    await content.aclose()
    del content, response
    gc.collect()
    for _ in range(500):
        if chunks.closed:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    assert chunks.closed
    assert chunks.produced == 1  # the chunk read before the response started; nothing more


def test_under_wsgi_the_generator_is_handed_over_as_it_is() -> None:
    chunks = Chunks(3)
    request = Request(RequestFactory().get("/api/v1/frames/export.csv"))
    response = streaming_response(
        request, iter(chunks), content_type="text/csv", filename="frames.csv"
    )
    assert not response.is_async
    assert response["Content-Disposition"] == 'attachment; filename="frames.csv"'
    first = next(iter(response))
    assert first == b"chunk 0\n"
    assert chunks.produced == 1


def test_a_failing_query_fails_before_the_response_starts() -> None:
    def rows() -> Iterator[str]:
        raise DatabaseError("the query failed")
        yield ""  # a generator, like the exports

    request = Request(AsyncRequestFactory().get("/api/v1/frames/export.ndjson"))
    # Raised in the view, so the client gets an error response instead of a cut-off 200.
    with pytest.raises(DatabaseError):
        streaming_response(request, rows(), content_type="application/x-ndjson", filename="f")
