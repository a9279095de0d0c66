"""The pieces behind the transport limits, in process: strict JSON decoding, the streaming
body guard and the failed-authentication token bucket."""

import asyncio
import json

import pytest
from starlette.types import Message

from kelpie.api._limits import THROTTLED_ADDRESSES_MAX, AuthThrottle, BodyRejected, LimitedReceive
from kelpie.schemas import JsonRejected, decode_json


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def now_us(self) -> int:
        return int(self.now * 1_000_000)

    def monotonic_s(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class TestDecodeJson:
    def test_ordinary_json_is_decoded_as_python_would(self) -> None:
        text = '{"a": [1, 2.5, "x\\u00e9\\ud83e\\udeb8", null, true], "b": {"c": -3}}'

        assert decode_json(text.encode()) == json.loads(text)

    @pytest.mark.parametrize(
        ("text", "detail"),
        [
            ('{"a": {"b": ["ok", "\\udfff"]}}', "a.b.1: String contains a lone surrogate (U+DFFF)"),
            ('"\\ud800"', "body: String contains a lone surrogate (U+D800)"),
            ('{"a": NaN}', "a: NaN is not a valid JSON number"),
            ("[1, -Infinity]", "1: -Infinity is not a valid JSON number"),
            ('{"n": -1e999}', "n: Number is too large (beyond a 64-bit float)"),
            ('{"\\ud800x": 1}', "body: Key '\\ud800x' contains a lone surrogate"),
        ],
    )
    def test_refused_values_name_where(self, text: str, detail: str) -> None:
        with pytest.raises(JsonRejected) as caught:
            decode_json(text.encode())

        assert caught.value.detail.startswith(detail)

    def test_malformed_json_keeps_pythons_error(self) -> None:
        with pytest.raises(json.JSONDecodeError):
            decode_json(b'{"a": ')

    def test_invalid_utf8_is_refused(self) -> None:
        with pytest.raises(JsonRejected, match="not valid UTF-8"):
            decode_json(b'{"a": "\xff"}')


class TestLimitedReceive:
    def run(self, receive: LimitedReceive, times: int) -> list[Message]:
        async def scenario() -> list[Message]:
            return [await receive() for _ in range(times)]

        return asyncio.run(scenario())

    def test_counts_the_body_as_it_streams(self) -> None:
        pieces = iter([{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 3)

        async def source() -> Message:
            return next(pieces)

        with pytest.raises(BodyRejected) as caught:
            self.run(LimitedReceive(source, bytes_max=10, timeout_s=5), 3)

        assert (caught.value.status, caught.value.detail) == (413, "Request body over 10 bytes")

    def test_a_stalled_body_times_out(self) -> None:
        async def stalled() -> Message:
            await asyncio.sleep(10)
            raise AssertionError("not reached")

        with pytest.raises(BodyRejected) as caught:
            self.run(LimitedReceive(stalled, bytes_max=10, timeout_s=0.05), 1)

        assert caught.value.status == 408

    def test_after_the_body_waiting_is_unbounded(self) -> None:
        calls = 0

        async def source() -> Message:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await asyncio.sleep(0.1)  # longer than the timeout: a stream awaiting disconnect
            return {"type": "http.disconnect"}

        messages = self.run(LimitedReceive(source, bytes_max=10, timeout_s=0.01), 2)

        assert [m["type"] for m in messages] == ["http.request", "http.disconnect"]


class TestAuthThrottle:
    def test_failures_past_the_allowance_are_throttled_until_it_refills(self) -> None:
        clock = ManualClock()
        throttle = AuthThrottle(clock, failures_max=3, window_s=60)

        for _ in range(3):
            assert throttle.retry_after_s("10.0.0.1") is None
            throttle.failed("10.0.0.1")

        assert throttle.retry_after_s("10.0.0.1") == 20  # one failure's worth: 60 s / 3
        assert throttle.retry_after_s("10.0.0.2") is None
        clock.now += 19
        assert throttle.retry_after_s("10.0.0.1") == 1
        clock.now += 1
        assert throttle.retry_after_s("10.0.0.1") is None
        throttle.failed("10.0.0.1")
        assert throttle.retry_after_s("10.0.0.1") == 20

    def test_the_table_is_bounded(self) -> None:
        clock = ManualClock()
        throttle = AuthThrottle(clock, failures_max=1, window_s=60)

        for index in range(THROTTLED_ADDRESSES_MAX + 1):
            throttle.failed(f"addr-{index}")

        assert throttle.retry_after_s("addr-0") is None  # the least recent went first
        assert throttle.retry_after_s(f"addr-{THROTTLED_ADDRESSES_MAX}") == 60
