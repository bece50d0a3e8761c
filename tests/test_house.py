"""The simulated house and its meter: what a DSMR 5 meter would state, and the same
readings arriving through p1evse's real sources (P1 telegrams over a pseudo-terminal
and TCP, DSMR-reader's topics through a broker)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from p1evse.model import Reading
from p1evse.mqtt import Broker, MqttSettings
from p1evse.sim.dayfile import DayFileError, read_csv
from p1evse.sim.house import House, HouseSettings, RecordedDay, Sample, SyntheticDay
from p1evse.sim.meter import (
    PHASE_DELIVERED_TOPICS,
    PHASE_RETURNED_TOPICS,
    PHASE_VOLTAGE_TOPICS,
    DsmrReaderPublisher,
    TelegramServer,
    dsmr5_telegram,
)
from p1evse.sources.telegram import DSMR_VERSIONS, FastDecoder, ReferenceDecoder, to_reading
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.gateways import SerialPort, listening, next_reading, source
from tests.probe import Probe

NOON = 12 * 3600.0


def a_house(**settings: object) -> House:
    return House(SyntheticDay(seed=4), HouseSettings(**settings))  # type: ignore[arg-type]


def same(got: Reading, expected: Reading) -> None:
    """The same values at the meter's resolution (1 W, 0.1 V) and the same clock."""
    assert got.import_w == pytest.approx(expected.import_w, abs=0.5)
    assert got.export_w == pytest.approx(expected.export_w, abs=0.5)
    for mine, theirs, tolerance in (
        (got.phase_import_w, expected.phase_import_w, 0.5),
        (got.phase_export_w, expected.phase_export_w, 0.5),
        (got.phase_voltage_v, expected.phase_voltage_v, 0.05),
    ):
        assert mine is not None
        assert theirs is not None
        assert mine == pytest.approx(theirs, abs=tolerance)
    assert got.meter_time == expected.meter_time


# -- the house ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"pv_phases": 2}, "Input should be 1 or 3"),
        ({"car_phases": "3 phases"}, "Input should be 1 or 3"),
        ({"voltage_v": 0}, "greater than or equal to 60"),
        ({"voltage_v": 1e9}, "less than or equal to 300"),
        ({"impedance_ohm": -0.1}, "greater than or equal to 0"),
    ],
)
def test_house_settings_out_of_range_are_refused(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        HouseSettings.model_validate(settings)


def test_the_same_seed_gives_the_same_day() -> None:
    times = [6 * 3600 + 37.0 * i for i in range(1500)]
    one, again, other = SyntheticDay(seed=7), SyntheticDay(seed=7), SyntheticDay(seed=8)
    assert [one.sample(t) for t in times] == [again.sample(t) for t in times]
    assert [one.sample(t) for t in times] != [other.sample(t) for t in times]


def test_the_meter_nets_the_phases_at_the_totals() -> None:
    """PV on L1 exports there while L2 and L3 import; the totals state only the net,
    import or export, never both."""
    house = a_house()
    for t in range(6 * 3600, 21 * 3600, 60):
        reading = house.read(float(t), 0.0).reading
        assert reading.import_w == 0 or reading.export_w == 0
        assert reading.phase_import_w is not None
        assert reading.phase_export_w is not None
        net = sum(reading.phase_import_w) - sum(reading.phase_export_w)  # type: ignore[arg-type]
        assert reading.net_w == pytest.approx(net, abs=2)
    sunny = house.read(NOON, 0.0).reading
    assert sunny.phase_export_w is not None
    assert sunny.phase_import_w is not None
    assert sunny.phase_export_w[0] > 0  # the inverter's phase
    assert sunny.phase_import_w[1] > 0  # the house's load on the others


def test_the_car_draws_on_its_phases_and_the_voltage_follows_the_load() -> None:
    day = RecordedDay(
        [Sample(0, 0.0, (100.0, 100.0, 100.0)), Sample(60, 0.0, (100.0,) * 3)],
        datetime(2026, 6, 1, 12),
    )
    one = House(day, HouseSettings(voltage_v=230.0)).read(0.0, 16.0)
    assert one.car_w == 16 * 230
    assert one.reading.phase_import_w == (100 + 16 * 230, 100, 100)
    assert one.reading.phase_voltage_v is not None
    low, high, _ = one.reading.phase_voltage_v
    assert low < high < 230  # the charging phase sags most
    three = House(day, HouseSettings(voltage_v=230.0, car_phases=3)).read(0.0, 16.0)
    assert three.car_w == 3 * 16 * 230
    assert three.reading.phase_import_w == (100 + 16 * 230,) * 3


def test_the_energy_counters_run_with_import_and_export() -> None:
    sunny = [Sample(0, 3000.0, (100.0,) * 3), Sample(3600, 3000.0, (100.0,) * 3)]
    monday_noon = datetime(2026, 6, 1, 12)
    house = House(RecordedDay(sunny, monday_noon))
    first = house.read(0.0, 0.0)
    later = house.read(600.0, 0.0)  # 10 minutes of 2.7 kW export
    assert later.returned_kwh[1] - first.returned_kwh[1] == pytest.approx(0.45, abs=0.001)
    assert later.returned_kwh[0] == first.returned_kwh[0]  # tariff 1 is for nights
    assert later.delivered_kwh == first.delivered_kwh
    assert later.tariff == 2
    charging = house.read(1200.0, 16.0)  # the car now takes more than the sun gives
    assert house.read(1800.0, 16.0).delivered_kwh[1] > charging.delivered_kwh[1]


def test_a_csv_day_in_epoch_seconds(tmp_path: Path) -> None:
    csv = tmp_path / "day.csv"
    csv.write_text("time,solar,grid\n1528614000, 1000, -700\n1528614060, 2000, -1700\n")
    day = read_csv(csv)
    assert (day.first_s, day.last_s) == (0.0, 60.0)
    middle = day.sample(30.0)
    assert middle.solar_w == 1500
    assert sum(middle.load_w) == pytest.approx(300)
    assert day.origin == datetime(2018, 6, 10, 9, 0)  # the meter's local time


def test_a_csv_day_in_iso_time_with_an_offset(tmp_path: Path) -> None:
    """OpenEVSE's day1.csv: UTC with an offset, one solar column with an empty unit."""
    csv = tmp_path / "day1.csv"
    csv.write_text(
        '"Date-time string","solar:solar ()"\n'
        "2020-03-16T06:40:00+00:00,4\n2020-03-16T06:41:00+00:00,5\n2020-03-16T06:42:00Z,9\n"
    )
    day = read_csv(csv)
    assert day.origin == datetime(2020, 3, 16, 7, 40)  # CET, the meter's local time
    assert (day.first_s, day.last_s) == (0.0, 120.0)
    assert day.sample(60.0).solar_w == 5


def test_a_gap_holds_each_columns_value_from_the_line_before(tmp_path: Path) -> None:
    """As OpenEVSE's simulator reads its day files (TimeSeries::valueAt): a gap is not
    bridged, each column keeps its last value; before its first, it takes that one."""
    csv = tmp_path / "gaps.csv"
    csv.write_text(
        "time,solar,grid\n"
        "1528614000, null, 100\n"  # no solar yet: the first solar value stands in
        "1528614060, 1000, -700\n"
        "1528614120, null, -900\n"  # solar held at 1000, the grid given
        "1528614180, , null\n"  # both held
        "1528614240, 3000, -2700\n"
        "1528614300, null, null\n"
        "1528614360, 3000, -2700\n"
    )
    day = read_csv(csv)
    at = {t: day.sample(t) for t in (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)}
    assert [at[t].solar_w for t in at] == [1000, 1000, 1000, 1000, 3000, 3000]
    house = [round(sum(sample.load_w)) for sample in at.values()]
    assert house == [1100, 300, 100, 100, 300, 300]  # grid + solar, each held on its own


def test_a_column_without_a_value_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "no-grid.csv"
    csv.write_text("time,solar,grid\n1528614000, 100, null\n1528614060, 200, \n")
    with pytest.raises(DayFileError, match=r"no-grid\.csv: no grid value on any line"):
        read_csv(csv)


def test_a_log_in_local_time_reads_the_hour_the_clocks_go_back_twice(tmp_path: Path) -> None:
    """The meter's local time passes 02:00-02:59 twice on the last Sunday of October:
    that was refused as "not after the line before"."""
    times = ["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"]
    csv = tmp_path / "autumn.csv"
    csv.write_text(
        "time,solar_w\n" + "".join(f"2024-10-27 {t}:00,{n}\n" for n, t in enumerate(times))
    )
    day = read_csv(csv)
    assert [sample.at for sample in day.samples] == [1800.0 * n for n in range(6)]


def test_a_local_time_the_clocks_skip_is_refused_for_what_it_is(tmp_path: Path) -> None:
    csv = tmp_path / "spring.csv"
    csv.write_text("time,solar_w\n2024-03-31 01:30:00,0\n2024-03-31 02:30:00,0\n")
    with pytest.raises(
        DayFileError, match=r"line 3: time '2024-03-31 02:30:00' is not on the meter's clock"
    ):
        read_csv(csv)
    csv.write_text("time,solar_w\n2024-03-31 01:30:00,0\n2024-03-31 03:00:00,0\n")
    assert [sample.at for sample in read_csv(csv).samples] == [0.0, 1800.0]


@pytest.mark.parametrize("first", ["253402300000", "9999-12-31T23:59:00+00:00"])
def test_a_time_that_the_meters_zone_cannot_hold_is_refused(tmp_path: Path, first: str) -> None:
    """The end of year 9999 in UTC is the year 10000 in Amsterdam: it was a traceback."""
    csv = tmp_path / "far.csv"
    csv.write_text(f"time,solar_w\n{first},1000\n{first},1000\n")
    with pytest.raises(DayFileError, match=r"far\.csv: line 2: time"):
        read_csv(csv)


def test_a_recorded_voltage_is_the_grids_unless_the_settings_say_otherwise(
    tmp_path: Path,
) -> None:
    csv = tmp_path / "vrms.csv"
    csv.write_text("time,solar_w,voltage_v\n1528614000, 1000, 249.2\n1528614060, 1000, 241.8\n")
    day = read_csv(csv)
    assert day.sample(30.0).voltage_v == pytest.approx(245.5)
    recorded = House(day, HouseSettings(impedance_ohm=0)).read(0.0, 0.0)
    assert recorded.reading.phase_voltage_v == (249.2, 249.2, 249.2)
    chosen = House(day, HouseSettings(impedance_ohm=0, recorded_voltage=False)).read(0.0, 0.0)
    assert chosen.reading.phase_voltage_v == (230.0, 230.0, 230.0)


# -- the telegram ------------------------------------------------------------------------


def test_the_telegram_states_what_the_house_reads() -> None:
    """Decoded by the p1 source's fast decoder and by dsmr-parser: the same reading."""
    house = a_house()
    for t in (NOON, 7 * 3600.0, 20.5 * 3600):
        metered = house.read(t, 10.0)
        frame = dsmr5_telegram(metered)
        for decoder in (FastDecoder(DSMR_VERSIONS["5"]), ReferenceDecoder(DSMR_VERSIONS["5"])):
            same(to_reading(decoder.decode(frame), t), metered.reading)


async def test_telegrams_over_a_pseudo_terminal_reach_the_p1_source(tmp_path: Path) -> None:
    house = a_house()
    port = SerialPort(tmp_path)
    port.plug()
    try:
        async with source(str(port.path)) as (_, intake):
            await listening(port.write, intake)
            expected = []
            for n in range(5):
                metered = house.read(NOON + n, 8.0)
                expected.append(metered.reading)
                port.write(dsmr5_telegram(metered))
            got = [await next_reading(intake) for _ in expected]
    finally:
        port.unplug()
    for mine, theirs in zip(got, expected, strict=True):
        same(mine, theirs)


async def test_telegrams_from_the_tcp_gateway_reach_the_p1_source() -> None:
    house = a_house()
    gateway = TelegramServer()
    await gateway.start()
    try:
        async with source(f"tcp://127.0.0.1:{gateway.port}") as (_, intake):
            await listening(gateway.send, intake)
            metered = house.read(NOON, 6.0)
            gateway.send(dsmr5_telegram(metered))
            reading = await next_reading(intake)
    finally:
        await gateway.close()
    same(reading, metered.reading)


# -- DSMR-reader's topics -----------------------------------------------------------------


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_dsmr_reader_topics_reach_the_bridge_with_their_phases(broker: BrokerProcess) -> None:
    source = {
        "type": "mqtt_split",
        "phase_delivered_topics": PHASE_DELIVERED_TOPICS,
        "phase_returned_topics": PHASE_RETURNED_TOPICS,
        "phase_voltage_topics": PHASE_VOLTAGE_TOPICS,
    }
    settings = settings_for(broker, source=source, publish={"interval": 0})
    metered = a_house().read(NOON, 0.0)
    async with running(settings) as app, Probe(broker.port) as probe:
        readings: list[Reading] = []
        app.site.bridge.observers.append(
            lambda event: readings.append(event) if isinstance(event, Reading) else None
        )
        await probe.subscribe("p1evse/grid_ie")
        link = Broker(MqttSettings(port=broker.port, client_id="meter", availability_topic="m/s"))
        connected = asyncio.Event()
        link.on_connected(connected.set)
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(connected.wait(), 5)
            DsmrReaderPublisher(link).publish(metered.reading)
            payload = await probe.next_payload("p1evse/grid_ie")
        finally:
            await link.close()
            task.cancel()
    assert int(payload) == round(metered.reading.net_w)
    [reading] = readings
    assert reading.phase_voltage_v == metered.reading.phase_voltage_v
    assert reading.phase_import_w == pytest.approx(metered.reading.phase_import_w)
    assert reading.phase_export_w == pytest.approx(metered.reading.phase_export_w)
