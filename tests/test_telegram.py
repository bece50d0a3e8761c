"""Telegram decoding: the fast decoder against dsmr-parser, CRC, units, totals and phases;
the framing of a byte stream; arbitrary bytes into a real pipeline."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from dsmr_parser import telegram_specifications
from dsmr_parser.clients import protocol
from dsmr_parser.parsers import TelegramParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p1evse.model import Rejection
from p1evse.sources.framing import TelegramStream
from p1evse.sources.telegram import (
    DSMR_VERSIONS,
    REFERENCE_NAMES,
    FastDecoder,
    ReferenceDecoder,
    TelegramError,
    crc16,
    make_decoder,
    to_reading,
)
from tests import telegrams
from tests.intakes import PipelineIntake

PLAIN_VERSIONS = [name for name, version in DSMR_VERSIONS.items() if not version.encrypted]


def decode_both(frame: bytes, version: str = "5") -> Any:
    """Both decoders' readings; they must be equal."""
    fast = to_reading(FastDecoder(DSMR_VERSIONS[version]).decode(frame), 0.0)
    reference = to_reading(ReferenceDecoder(DSMR_VERSIONS[version]).decode(frame), 0.0)
    assert fast == reference
    return fast


def test_the_version_table_agrees_with_dsmr_parser() -> None:
    for name, version in DSMR_VERSIONS.items():
        factory, serial = protocol._create_dsmr_protocol(name, lambda telegram: None, object)
        spec = getattr(telegram_specifications, version.spec)
        assert factory.args[1].telegram_specification is spec, name
        assert (version.baudrate, version.byte_size, version.parity) == (
            serial["baudrate"],
            serial["bytesize"],
            serial["parity"],
        ), name
        assert version.crc == spec["checksum_support"], name
        assert version.encrypted == bool(spec.get("general_global_cipher")), name


def test_crc16_matches_dsmr_parser_and_the_builder() -> None:
    for frame in (telegrams.dsmr5(), telegrams.fluvius(), b"/", b"!" * 300):
        body = frame[: frame.rindex(b"!") + 1] if b"!" in frame else frame
        assert crc16(body) == TelegramParser.crc16(body.decode()) == telegrams.crc16(body)


def test_dsmr5_in_kilowatts() -> None:
    reading = decode_both(telegrams.dsmr5(import_w=1234, export_w=0))
    assert (reading.import_w, reading.export_w) == (1234, 0)
    assert reading.phase_import_w == (70, 32, 142)
    assert reading.phase_export_w == (0, 0, 0)
    assert reading.phase_voltage_v == (230.0, 230.0, 229.0)
    # 19:20:02 winter time in the Netherlands
    assert reading.meter_time == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)


def test_dsmr4() -> None:
    reading = decode_both(telegrams.dsmr4(import_w=2027), "4")
    assert round(reading.import_w) == 2027
    assert reading.export_w == 0
    assert reading.phase_voltage_v is None


def test_fluvius_exporting() -> None:
    reading = decode_both(telegrams.fluvius(export_w=1234), "5B")
    assert (reading.import_w, reading.export_w, reading.net_w) == (0, 1234, -1234)
    assert reading.phase_export_w == (500, 400, 334)


def test_a_meter_in_watts() -> None:
    reading = decode_both(telegrams.watts_meter(export_w=734))
    assert (reading.import_w, reading.export_w) == (0, 734)
    assert reading.phase_export_w == (734, None, None)
    assert reading.phase_voltage_v == (231.4, None, None)


def test_a_meter_without_totals_gives_the_per_phase_sums() -> None:
    # import on L1 and L3 while L2 exports: both at once, per phase
    reading = decode_both(telegrams.phases_only((1500, 0, 250), (0, 800, 0)))
    assert (reading.import_w, reading.export_w, reading.net_w) == (1750, 800, 950)


def test_a_version_without_crc_accepts_no_checksum() -> None:
    frame = telegrams.telegram(
        "ISk5MT382", ["1-0:1.7.0(0001.50*kW)", "1-0:2.7.0(0000.00*kW)"], False
    )
    assert decode_both(frame, "2.2").import_w == 1500


@pytest.mark.parametrize("decoder", [FastDecoder, ReferenceDecoder])
def test_a_wrong_crc_is_refused(decoder: Any) -> None:
    with pytest.raises(TelegramError) as caught:
        decoder(DSMR_VERSIONS["5"]).decode(telegrams.corrupt(telegrams.dsmr5()))
    assert caught.value.reason is Rejection.CRC


def test_a_missing_crc_is_refused_where_the_standard_has_one() -> None:
    frame = telegrams.telegram("ISk5MT382", ["1-0:1.7.0(01.500*kW)"], crc=False)
    with pytest.raises(TelegramError) as caught:
        FastDecoder(DSMR_VERSIONS["5"]).decode(frame)
    assert caught.value.reason is Rejection.CRC


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["1-3:0.2.8(50)", "1-0:1.8.1(000004.426*kWh)"], Rejection.MISSING_FIELD),
        (["1-0:1.7.0(01.500*kVA)"], Rejection.BAD_TELEGRAM),
        (["1-0:1.7.0(01.500)"], Rejection.BAD_TELEGRAM),
        (["1-0:1.7.0(abc*kW)"], Rejection.BAD_TELEGRAM),
    ],
)
def test_telegrams_without_usable_power(lines: list[str], reason: Rejection) -> None:
    frame = telegrams.telegram("ISk5MT382", lines)
    for decoder in (FastDecoder, ReferenceDecoder):
        with pytest.raises(TelegramError) as caught:
            to_reading(decoder(DSMR_VERSIONS["5"]).decode(frame), 0.0)
        assert caught.value.reason is reason, decoder


def test_a_missing_direction_is_zero() -> None:
    reading = decode_both(telegrams.telegram("ISk5MT382", ["1-0:1.7.0(01.500*kW)"]))
    assert (reading.import_w, reading.export_w) == (1500, 0)


# -- the fast decoder agrees with dsmr-parser on every generated telegram -----------------

POWER_CODES = [code for code in REFERENCE_NAMES if code.endswith(".7.0") and code[0] != "3"]
FILLER = [
    "1-0:1.8.1(000004.426*kWh)",
    "0-0:96.14.0(0002)",
    "0-0:96.13.0()",
    "1-0:31.7.0(001*A)",
    "0-1:24.2.1(170102161005W)(00000.107*m3)",
    "1-0:99.97.0(0)(0-0:96.7.19)",
]


def spec_names(version: str) -> set[str]:
    spec = getattr(telegram_specifications, DSMR_VERSIONS[version].spec)
    return {item["value_name"] for item in spec["objects"]}


@st.composite
def generated_telegrams(draw: st.DrawFn, version: str) -> bytes:
    known = spec_names(version)
    unit = draw(st.sampled_from(["kW", "W"]))
    lines = list(draw(st.lists(st.sampled_from(FILLER), max_size=4)))
    for code, name in REFERENCE_NAMES.items():
        if name not in known or not draw(st.booleans()):
            continue
        if code in ("32.7.0", "52.7.0", "72.7.0"):
            value = f"{draw(st.integers(0, 3000)) / 10:05.1f}*V"
        elif unit == "kW":
            value = f"{draw(st.integers(0, 99_999)) / 1000:06.3f}*kW"
        else:
            value = f"{draw(st.integers(0, 99_999)):06d}*W"
        lines.insert(draw(st.integers(0, len(lines))), f"1-0:{code}({value})")
    if "P1_MESSAGE_TIMESTAMP" in known and draw(st.booleans()):
        stamp = draw(st.datetimes(datetime(2001, 1, 1), datetime(2098, 12, 31)))
        lines.insert(0, f"0-0:1.0.0({stamp:%y%m%d%H%M%S}{draw(st.sampled_from('SW'))})")
    return telegrams.telegram("XYZ5\\2TEST", lines, crc=DSMR_VERSIONS[version].crc)


@pytest.mark.parametrize("version", PLAIN_VERSIONS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_decoder_agrees_with_dsmr_parser(version: str, data: st.DataObject) -> None:
    frame = data.draw(generated_telegrams(version))
    fast = FastDecoder(DSMR_VERSIONS[version]).decode(frame)
    reference = ReferenceDecoder(DSMR_VERSIONS[version]).decode(frame)
    assert fast == reference
    outcomes = []
    for values in (fast, reference):
        try:
            outcomes.append(to_reading(values, 0.0))
        except TelegramError as exc:
            outcomes.append(exc.reason)  # type: ignore[arg-type]
    assert outcomes[0] == outcomes[1]


# -- framing -------------------------------------------------------------------------------


def stream(**kwargs: Any) -> tuple[TelegramStream, PipelineIntake]:
    intake = PipelineIntake.relaying(**kwargs)
    return TelegramStream(make_decoder(DSMR_VERSIONS["5"]), intake, intake.clock), intake


def rejections(intake: PipelineIntake) -> dict[Rejection, int]:
    return intake.pipeline.counters.rejected


def test_leading_garbage_is_skipped() -> None:
    telegram_stream, intake = stream()
    garbage = b"\x00\xff garbage!1234\r\n"
    telegram_stream.feed(garbage + telegrams.dsmr5(import_w=500))
    assert intake.published == [500]
    assert rejections(intake) == {}
    assert telegram_stream.skipped_bytes == len(garbage)


def test_a_truncated_telegram_is_dropped_and_counted() -> None:
    telegram_stream, intake = stream()
    first = telegrams.dsmr5(import_w=500)
    telegram_stream.feed(first[:400] + telegrams.dsmr5(import_w=600))
    assert intake.published == [600]
    assert rejections(intake) == {Rejection.TRUNCATED: 1}


def test_an_oversized_telegram_is_dropped_and_the_buffer_stays_bounded() -> None:
    telegram_stream, intake = stream()
    huge = telegrams.telegram("ISk5MT382", ["0-0:96.13.0(" + "41" * 5000 + ")"])
    telegram_stream.feed(huge[:6000])
    telegram_stream.feed(huge[6000:] + telegrams.dsmr5(import_w=700))
    assert intake.published == [700]
    assert rejections(intake) == {Rejection.OVERSIZED: 1}
    for chunk in range(100):  # 400 kB without an end
        telegram_stream.feed(b"/" + b"A" * 4000 if chunk == 0 else b"A" * 4000)
        assert len(telegram_stream._buffer) <= 8192 + 4001
    assert rejections(intake)[Rejection.OVERSIZED] > 1


def test_a_bad_crc_keeps_the_previous_value() -> None:
    telegram_stream, intake = stream()
    telegram_stream.feed(telegrams.dsmr5(import_w=500))
    telegram_stream.feed(telegrams.corrupt(telegrams.dsmr5(import_w=9000)))
    assert intake.published == [500]
    assert rejections(intake) == {Rejection.CRC: 1}
    assert intake.pipeline.last_reading is not None
    assert intake.pipeline.last_reading.import_w == 500


def test_end_of_data_inside_a_telegram_counts_as_truncated() -> None:
    telegram_stream, intake = stream()
    telegram_stream.feed(telegrams.dsmr5()[:100])
    telegram_stream.end()
    telegram_stream.feed(telegrams.dsmr5(import_w=321)[100:])  # the rest alone is garbage
    assert intake.published == []
    assert rejections(intake) == {Rejection.TRUNCATED: 1}


def test_a_value_beyond_max_power_is_not_published() -> None:
    telegram_stream, intake = stream()
    telegram_stream.feed(telegrams.dsmr5(import_w=99_000))
    assert intake.published == []
    assert rejections(intake) == {Rejection.IMPLAUSIBLE: 1}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_chunking_never_changes_what_is_read(data: st.DataObject) -> None:
    frames = [telegrams.dsmr5(import_w=100 + i, clock=telegrams.meter_clock(i)) for i in range(3)]
    payload = b"noise" + b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=20)))
    telegram_stream, intake = stream()
    for start, end in zip([0, *cuts], [*cuts, len(payload)], strict=True):
        telegram_stream.feed(payload[start:end])
    assert intake.published == [100, 101, 102]


mutations = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda frame, at, junk: frame[:at] + junk + frame[at + len(junk) :],
        st.sampled_from([telegrams.dsmr5(), telegrams.fluvius(), telegrams.watts_meter()]),
        st.integers(0, 1200),
        st.binary(min_size=1, max_size=8),
    ),
    st.sampled_from([telegrams.dsmr5(import_w=60_000), telegrams.phases_only((30e3, 30e3, 0))]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutations, max_size=8), st.sampled_from(PLAIN_VERSIONS))
def test_arbitrary_bytes_never_crash_nor_publish_implausible_values(
    chunks: list[bytes], version: str
) -> None:
    intake = PipelineIntake.relaying(stale_after=3600)
    telegram_stream = TelegramStream(make_decoder(DSMR_VERSIONS[version]), intake, intake.clock)
    for chunk in chunks:
        telegram_stream.feed(chunk)
    telegram_stream.end()
    for watts in intake.published:
        assert -50_000 <= watts <= 50_000
    assert all(math.isfinite(w) for w in intake.published)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_the_reference_decoder_never_crashes(frame: bytes) -> None:
    for version in ("5", "2.2"):
        with contextlib.suppress(TelegramError):
            to_reading(ReferenceDecoder(DSMR_VERSIONS[version]).decode(b"/" + frame), 0.0)
