"""DSMR telegrams: from one complete telegram to a `Reading`, or a counted reason why not.

One piece shared by the `p1` source (serial port or TCP gateway) and `mqtt_telegram`
(a whole telegram in one MQTT message); `framing.py` cuts a byte stream into telegrams.

Two decoders produce the same values:

- `FastDecoder` checks the CRC (also where the standard has none but the meter sends
  one) and reads only the handful of lines p1evse uses (power
  totals and per phase, voltages, the meter's clock) in one pass, each line as
  dsmr-parser reads it (OBIS suffixes such as EasyMeter's `*255`, any unit or none,
  empty values, the lines the version's specification has and no others). It is
  the decoder for every plain-text telegram, chosen by bench/p1.py: the whole `p1` path
  (framing, CRC, decoding, pipeline) takes about 0.3 ms of CPU per DSMR 5 telegram with
  it and about 2.4 ms with dsmr-parser (3,200 against 420 telegrams/s per core; the
  target is 2,000), and it spares the service dsmr-parser's imports (cryptography,
  dlms-cosem: 12 MB of resident memory).
- `ReferenceDecoder` is dsmr-parser. It decrypts the encrypted versions (`MSn`,
  `SAGEMCOM_T210_D_R`), and the tests hold the fast decoder to agree with it on every
  generated telegram of every version.

Net power is 1-0:1.7.0 (import) minus 1-0:2.7.0 (export) in the unit the telegram states
(kW or W); a meter without those totals gives the sums of its per-phase lines. A meter
that signs its power (EasyMeter Q3D: 1-0:1.7.0 negative while the house exports, and no
1-0:2.7.0) has a negative import with no export (absent or zero) read as that much
export; per phase alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from dsmr_parser.value_types import timestamp  # plain datetime code, no heavy imports

from p1evse.errors import InputRejected
from p1evse.inputs import UNIT_FACTORS
from p1evse.model import Phases, Reading, Rejection

Parity = Literal["N", "E"]


# What p1evse reads, by OBIS code C.D.E (the A-B: channel prefix is not looked at)
IMPORT_TOTAL, EXPORT_TOTAL = "1.7.0", "2.7.0"
PHASE_IMPORT = ("21.7.0", "41.7.0", "61.7.0")
PHASE_EXPORT = ("22.7.0", "42.7.0", "62.7.0")
PHASE_VOLTAGE = ("32.7.0", "52.7.0", "72.7.0")
CLOCK = "1.0.0"  # the meter's timestamp

_TOTALS = (IMPORT_TOTAL, EXPORT_TOTAL)
_PHASE_POWER = (*PHASE_IMPORT, *PHASE_EXPORT)
_EVERY_CODE = (*_TOTALS, *_PHASE_POWER, *PHASE_VOLTAGE)


@dataclass(frozen=True, slots=True)
class DsmrVersion:
    """One of dsmr-parser's telegram versions and the serial settings that go with it
    (as in dsmr_parser.clients.protocol; tests/test_telegram.py checks they agree)."""

    spec: str  # attribute of dsmr_parser.telegram_specifications
    baudrate: int
    byte_size: int
    parity: Parity
    crc: bool  # the standard has a CRC16 after '!'
    # the codes above that the spec reads, and whether it reads the clock: dsmr-parser
    # ignores the other lines, and so does the fast decoder
    codes: tuple[str, ...] = _EVERY_CODE
    clock: bool = True
    encrypted: bool = False  # DLMS general-global-cipher frames, not text


# baud rate, data bits, parity (one stop bit): DSMR 2.2 / 3, DSMR 4, DSMR 5 and later
_V2: tuple[int, int, Parity] = (9600, 7, "E")
_V4: tuple[int, int, Parity] = (115200, 7, "E")
_V5: tuple[int, int, Parity] = (115200, 8, "N")

DSMR_VERSIONS: dict[str, DsmrVersion] = {
    "2.2": DsmrVersion("V2_2", *_V2, crc=False, codes=_TOTALS, clock=False),
    "4": DsmrVersion("V4", *_V4, crc=True, codes=(*_TOTALS, *_PHASE_POWER)),
    "4+": DsmrVersion("V5", *_V4, crc=True),
    "5": DsmrVersion("V5", *_V5, crc=True),
    "5B": DsmrVersion("BELGIUM_FLUVIUS", *_V5, crc=True),
    "5L": DsmrVersion("LUXEMBOURG_SMARTY", *_V5, crc=True),
    "5S": DsmrVersion("SWEDEN", *_V5, crc=True),
    "Q3D": DsmrVersion("Q3D", *_V5, crc=False, codes=(*_TOTALS, *PHASE_IMPORT), clock=False),
    "ISKRA_IE": DsmrVersion("ISKRA_IE", *_V5, crc=False),
    "5EONHU": DsmrVersion("EON_HUNGARY", *_V5, crc=True, codes=(*_TOTALS, *PHASE_VOLTAGE)),
    "MSn": DsmrVersion("MSN", *_V5, crc=True, encrypted=True),
    "SAGEMCOM_T210_D_R": DsmrVersion(
        "SAGEMCOM_T210_D_R", *_V5, crc=True, codes=_TOTALS, encrypted=True
    ),
}
DsmrVersionName = Literal[
    "2.2", "4", "4+", "5", "5B", "5L", "5S", "Q3D", "ISKRA_IE", "5EONHU", "MSn", "SAGEMCOM_T210_D_R"
]


def serial_settings(version: DsmrVersion) -> str:
    """`115200 baud 8N1`"""
    return f"{version.baudrate} baud {version.byte_size}{version.parity}1"


# what meters send, by standard, and the dsmr_version that reads it
METER_SERIAL_SETTINGS = ", ".join(
    f"{standard}: {serial_settings(DSMR_VERSIONS[name])} (dsmr_version {name})"
    for standard, name in (("DSMR 2.2 and 3", "2.2"), ("DSMR 4", "4"), ("DSMR 5", "5"))
)


@dataclass(frozen=True, slots=True)
class TelegramValues:
    """The lines p1evse uses, as the telegram states them: OBIS code -> (value, unit)."""

    lines: dict[str, tuple[float, str | None]]
    meter_time: datetime | None


class Decoder(Protocol):
    def decode(self, frame: bytes) -> TelegramValues:
        """The values of one complete telegram; `InputRejected` says why there are none."""
        ...


# -- CRC ---------------------------------------------------------------------------------


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0xA001, reflected, initial 0), as DSMR uses from '/' to '!'.

    dsmr-parser's own `TelegramParser.crc16` takes about 0.8 ms per DSMR 5 telegram (it
    converts a hex string per byte); this table loop is the same function in about a
    fifth of that, 0.17 ms (bench/p1.py)."""
    crc = 0
    table = _CRC16_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


# the checksum after the telegram's '!': 1 to 4 hex digits (some meters leave out
# leading zeros; dsmr-parser reads upper case only, some publishers write lower case)
_CHECKSUM = re.compile(rb"!([0-9A-Fa-f]{1,4})")


# a whole checksum, where the standard has none: 4 hex digits and the line's end
_FULL_CHECKSUM = re.compile(rb"![0-9A-Fa-f]{4}(?=\x00?\r\n|\x00?$)")


def check_crc(frame: bytes, *, required: bool = True) -> None:
    """Raise `InputRejected(CRC)` unless the telegram's checksum matches its content.
    `required=False` (a standard without one): checked when the telegram has a whole
    one, 4 hex digits after its '!' (Iskra's Irish meters send it; dsmr-parser does not
    look, and a corrupt telegram would be a wrong value)."""
    end = frame.rfind(b"!")
    if not required and (end < 0 or _FULL_CHECKSUM.match(frame, end) is None):
        return
    checksum = _CHECKSUM.match(frame, end) if end >= 0 else None
    if checksum is None:
        raise InputRejected(
            Rejection.CRC,
            "no checksum after '!' (DSMR 2.2 and 3 meters and the EasyMeter send none: "
            "dsmr_version 2.2 or Q3D reads them)",
        )
    expected = int(checksum.group(1), 16)
    actual = crc16(frame[: end + 1])
    if actual != expected:
        raise InputRejected(Rejection.CRC, f"checksum {expected:04X}, content gives {actual:04X}")


# -- the fast decoder --------------------------------------------------------------------

# dsmr-parser finds each line it reads with its own `^\d-\d:<C.D.E>.+?\r\n` (multi-line,
# dot-all): whatever follows the code (a `*255` suffix) up to the first CR LF, or up to
# the next one when the code is followed by CR LF at once. It takes the line's value
# from its one group `(...)` of these characters, `number*unit` or `number`, and `()` is
# no value. The fast decoder finds and reads the lines the same way.
_GROUP = re.compile(rb"(?<=\()[0-9a-zA-Z.*\-:]*(?=\))")
# nearly every line: digits, a unit or none, an optional `*255`; read without the above
_USUAL = re.compile(rb"(?:\*\d+)?\((\d+(?:\.\d+)?)(?:\*([A-Za-z]+))?\)\r\n")


def _line_finder(codes: tuple[str, ...]) -> re.Pattern[bytes]:
    """A look-ahead at every line start: one pass finds what dsmr-parser's separate
    search per code finds, a line that another code's line ran over included."""
    alternatives = b"|".join(re.escape(code.encode()) for code in codes)
    return re.compile(rb"^(?=\d-\d:(" + alternatives + rb")(.+?\r\n))", re.MULTILINE | re.DOTALL)


class FastDecoder:
    """CRC and the few lines p1evse uses, without dsmr-parser (see the module docstring)."""

    def __init__(self, version: DsmrVersion) -> None:
        self._crc = version.crc
        self._lines = _line_finder((*version.codes, *((CLOCK,) if version.clock else ())))

    def decode(self, frame: bytes) -> TelegramValues:
        check_crc(frame, required=self._crc)
        lines: dict[str, tuple[float, str | None]] = {}
        meter_time = None
        # where dsmr-parser's search for a code goes on after a line that ran over the
        # next (a usual line ends where it should: the next one starts after it)
        searched_to: dict[bytes, int] = {}
        for match in self._lines.finditer(frame):
            code_bytes, rest = match.group(1, 2)
            if searched_to and match.start() < searched_to.get(code_bytes, 0):
                continue
            code = code_bytes.decode()
            usual = _USUAL.fullmatch(rest) if code != CLOCK else None
            if usual is not None:
                number, unit = usual.groups()
                lines[code] = (float(number), unit.decode() if unit is not None else None)
                continue
            searched_to[code_bytes] = match.end(2)
            value = _value(frame[match.start() : match.end(2)], rest)
            if code == CLOCK:
                meter_time = timestamp(value[0]) if value is not None else None
            elif value is None:
                lines.pop(code, None)  # the last line of a code counts, an empty one too
            else:
                lines[code] = (_number(code, value[0]), value[1])
        return TelegramValues(lines, meter_time)


def _value(line: bytes, rest: bytes) -> tuple[str, str | None] | None:
    """The line's value and unit as dsmr-parser reads them; None for `()`."""
    groups = _GROUP.findall(rest)
    if len(groups) != 1 or groups[0].count(b"*") > 1:
        shown = line[:60].decode("ascii", "replace").rstrip()
        raise InputRejected(Rejection.BAD_TELEGRAM, f"malformed line {shown!r}")
    if not groups[0]:
        return None
    number, star, unit = groups[0].decode().partition("*")
    return number, unit if star else None


def _number(code: str, text: str) -> float:
    """What dsmr-parser makes of a value (a `Decimal`), as a float."""
    try:
        return to_float(Decimal(text))
    except InvalidOperation:
        raise InputRejected(Rejection.BAD_TELEGRAM, f"{code} value {text!r}") from None


def to_float(value: Decimal) -> float:
    """`float()`, except that a signalling NaN is a NaN like any other, not a ValueError."""
    return math.nan if value.is_snan() else float(value)


# -- the reference decoder: dsmr-parser ----------------------------------------------------

# dsmr-parser's attribute names for the lines p1evse reads
REFERENCE_NAMES = {
    IMPORT_TOTAL: "CURRENT_ELECTRICITY_USAGE",
    EXPORT_TOTAL: "CURRENT_ELECTRICITY_DELIVERY",
    **{
        code: f"INSTANTANEOUS_ACTIVE_POWER_L{phase}_POSITIVE"
        for phase, code in enumerate(PHASE_IMPORT, 1)
    },
    **{
        code: f"INSTANTANEOUS_ACTIVE_POWER_L{phase}_NEGATIVE"
        for phase, code in enumerate(PHASE_EXPORT, 1)
    },
    **{code: f"INSTANTANEOUS_VOLTAGE_L{phase}" for phase, code in enumerate(PHASE_VOLTAGE, 1)},
}


class ReferenceDecoder:
    """dsmr-parser: the reference the fast decoder is tested against, and the decoder of
    encrypted telegrams. Imported on first use: it loads cryptography and dlms-cosem."""

    def __init__(
        self,
        version: DsmrVersion,
        decryption_key: str = "",
        authentication_key: str | None = "",
    ) -> None:
        from dsmr_parser import telegram_specifications
        from dsmr_parser.exceptions import DecryptionError, InvalidChecksumError
        from dsmr_parser.parsers import TelegramParser

        self._parser = TelegramParser(getattr(telegram_specifications, version.spec))
        self._encrypted = version.encrypted
        self._keys = (decryption_key, authentication_key)
        self._checksum_error: type[Exception] = InvalidChecksumError
        self._decryption_error: type[Exception] = DecryptionError

    def decode(self, frame: bytes) -> TelegramValues:
        text = frame.hex() if self._encrypted else frame.decode("ascii", "replace")
        decryption_key, authentication_key = self._keys
        try:
            telegram = self._parser.parse(text, decryption_key, authentication_key, throw_ex=True)
        except self._checksum_error as exc:
            raise InputRejected(Rejection.CRC, str(exc)) from None
        except self._decryption_error as exc:
            detail = f"{exc} (check decryption_key and authentication_key)"
            raise InputRejected(Rejection.DECRYPTION, detail) from None
        except Exception as exc:  # dsmr-parser raises what its value parsers raise
            raise InputRejected(Rejection.BAD_TELEGRAM, f"{type(exc).__name__}: {exc}") from None
        lines: dict[str, tuple[float, str | None]] = {}
        for code, name in REFERENCE_NAMES.items():
            item: Any = getattr(telegram, name, None)
            if item is not None and item.value is not None:
                lines[code] = (to_float(item.value), item.unit)
        stamp: Any = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
        meter_time = stamp.value if stamp is not None else None
        return TelegramValues(lines, meter_time if isinstance(meter_time, datetime) else None)


def make_decoder(
    version: DsmrVersion, decryption_key: str = "", authentication_key: str | None = ""
) -> Decoder:
    if version.encrypted:
        return ReferenceDecoder(version, decryption_key, authentication_key)
    return FastDecoder(version)


# -- values -> Reading -------------------------------------------------------------------


def to_reading(
    values: TelegramValues, at: float, refused: list[InputRejected] | None = None
) -> Reading:
    """Import and export in W (both >= 0) from the totals, else from the per-phase
    sums; a signed meter's negative import is export. With `refused`, a per-phase value
    or voltage that cannot be read (not a number, a unit that is not one) is left out
    and said there, and the reading's totals still count; not a per-phase power where
    its total is missing (the sum of the others would be a wrong value)."""
    lines = values.lines
    phase_import = _phases(
        lines, PHASE_IMPORT, UNIT_FACTORS, refused if IMPORT_TOTAL in lines else None
    )
    phase_export = _phases(
        lines, PHASE_EXPORT, UNIT_FACTORS, refused if EXPORT_TOTAL in lines else None
    )
    import_w, export_w = _signed(
        _total(lines, IMPORT_TOTAL, phase_import), _total(lines, EXPORT_TOTAL, phase_export)
    )
    phase_import, phase_export = _signed_phases(phase_import, phase_export)
    if import_w is None and export_w is None:
        raise InputRejected(
            Rejection.MISSING_FIELD,
            "no power lines: neither 1-0:1.7.0 / 1-0:2.7.0 nor per-phase 21.7.0 ... 62.7.0",
        )
    return Reading(
        at,
        import_w or 0.0,  # a meter that states only one direction has none of the other
        export_w or 0.0,
        phase_import,
        phase_export,
        _phases(lines, PHASE_VOLTAGE, {"V": 1.0}, refused),
        values.meter_time,
    )


def _signed(import_w: float | None, export_w: float | None) -> tuple[float | None, float | None]:
    """A negative import with no export beside it is export (a signed meter); any other
    pair as it is (a negative value beside the other direction is refused downstream)."""
    if import_w is not None and import_w < 0 and not export_w:
        return 0.0, -import_w
    return import_w, export_w


def _signed_phases(
    imports: Phases | None, exports: Phases | None
) -> tuple[Phases | None, Phases | None]:
    if imports is None or all(value is None or value >= 0 for value in imports):
        return imports, exports
    pairs = [_signed(value, exports[n] if exports else None) for n, value in enumerate(imports)]
    return (
        (pairs[0][0], pairs[1][0], pairs[2][0]),
        (pairs[0][1], pairs[1][1], pairs[2][1]),
    )


def _watts(code: str, value: float, unit: str | None, units: dict[str, float]) -> float:
    """The value times its unit's factor; the unit in any case (`kw`, `KW`: some meters
    and gateways write them so)."""
    factor = units.get(unit or "")
    if factor is None and unit:
        factor = next((f for name, f in units.items() if name.lower() == unit.lower()), None)
    if factor is None:
        raise InputRejected(
            Rejection.BAD_TELEGRAM,
            f"{code} unit {unit!r}; expected {' or '.join(units)}",
        )
    if not math.isfinite(value):
        raise InputRejected(Rejection.NON_FINITE, f"{code} {value!r}")
    return value * factor


def _phases(
    lines: dict[str, tuple[float, str | None]],
    codes: tuple[str, ...],
    units: dict[str, float],
    refused: list[InputRejected] | None = None,
) -> Phases | None:
    found: list[float | None] = []
    for code in codes:
        value = None
        if code in lines:
            try:
                value = _watts(code, *lines[code], units)
            except InputRejected as exc:
                if refused is None:
                    raise
                refused.append(exc)
        found.append(value)
    if all(value is None for value in found):
        return None
    return (found[0], found[1], found[2])


def _total(
    lines: dict[str, tuple[float, str | None]], code: str, phases: Phases | None
) -> float | None:
    if code in lines:
        return _watts(code, *lines[code], UNIT_FACTORS)
    if phases is None:
        return None
    return sum(value for value in phases if value is not None)
