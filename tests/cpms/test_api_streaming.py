"""Streamed API responses: under ASGI the rows are pulled one chunk at a time from the request's
thread (Django would otherwise read a synchronous iterator whole before sending a byte)."""

from __future__ import annotations

from collections.abc import Iterator

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
    response = streaming_response(request, iter(chunks), content_type="application/x-ndjson", filename="f")
    assert response.is_async
    received = []
    async for part in response:
        received.append(part)
        assert chunks.produced == len(received)
    assert received == [f"chunk {n}\n".encode() for n in range(5)]
    assert chunks.closed


async def test_closing_the_response_closes_the_generator() -> None:
    chunks = Chunks(100)
    request = Request(AsyncRequestFactory().get("/api/v1/frames/export.ndjson"))
    response = streaming_response(request, iter(chunks), content_type="application/x-ndjson", filename="f")
    content = aiter(response)
    await anext(content)
    await content.aclose()
    assert chunks.produced == 1
    # What Django's ASGI handler does once the response is over.
    response.close()
    assert chunks.closed


def test_under_wsgi_the_generator_is_handed_over_as_it_is() -> None:
    chunks = Chunks(3)
    request = Request(RequestFactory().get("/api/v1/frames/export.csv"))
    response = streaming_response(request, iter(chunks), content_type="text/csv", filename="frames.csv")
    assert not response.is_async
    assert response["Content-Disposition"] == 'attachment; filename="frames.csv"'
    first = next(iter(response))
    assert first == b"chunk 0\n"
    assert chunks.produced == 1
