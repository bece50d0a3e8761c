"""DSMR telegrams built in the tests: CR LF line ends and a CRC16 computed here, with an
implementation of its own (bit by bit), independent of the one under test."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CRLF = "\r\n"


def crc16(data: bytes) -> int:
    """CRC-16/ARC: polynomial 0xA001 (reflected 0x8005), initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def telegram(
    header: str,
    lines: Sequence[str],
    crc: bool = True,
    *,
    checksum_format: str = "{:04X}",
    end: str = CRLF,
) -> bytes:
    """`/header`, an empty line, the data lines, `!` and (with `crc`) the checksum over
    everything from `/` to `!` inclusive: 4 upper-case hex digits, or as
    `checksum_format` says (`{:X}`: without leading zeros, as some meters send it); then
    `end` (some meters send a NUL before the CR LF)."""
    body = f"/{header}{CRLF}{CRLF}" + "".join(line + CRLF for line in lines) + "!"
    checksum = checksum_format.format(crc16(body.encode("ascii"))) if crc else ""
    return (body + checksum + end).encode("ascii")


# -- the forms meters write ----------------------------------------------------------------

# identification lines: with a backslash, a space, a control character, no baud digit
HEADERS = ["XYZ5\\2TEST-1000", "XYZ5Q3DB1024 V3.04", "XYZ5\x02MIE5T-200", "XYZ-HEATLINK"]

# lines p1evse does not read, in the forms meters send them: units or none, `*255`
# suffixes, empty and repeated groups, a gas value on a line of its own (DSMR 2.2)
OTHER_LINES = [
    "1-3:0.2.8(50)",
    "0-0:96.1.1(4B384547303034303436333935353037)",
    "1-0:0.0.0(00000000)",
    "1-0:0.0.0*255(1234567890123)",
    "0-0:96.1.255*255(1ESY1234567890)",
    "1-0:96.5.5*255(80)",
    "1-0:1.8.1(000004.426*kWh)",
    "1-0:1.8.0*255(00012345.6789012*kWh)",
    "1-0:1.8.0(006545766*Wh)",
    "1-0:3.7.0(000000000*var)",
    "0-0:96.14.0(0002)",
    "0-0:96.7.21(00013)",
    "1-0:99.97.0(0)(0-0:96.7.19)",
    "1-0:99.97.0(1)(0-0:96.7.19)(190326095015W)(0000002014*s)",
    "0-0:96.13.0()",
    "0-0:96.13.0(303132333435363738)",
    "1-0:31.7.0(0.48*A)",
    "1-0:31.7.0(000*A)",
    "1-0:13.7.0(4.556)",
    "1-0:14.7.0(50.00*Hz)",
    "0-0:17.0.0(999.9*kW)",
    "1-0:1.4.0(02.351*kW)",
    "1-0:1.6.0(200509134558S)(02.589*kW)",
    "0-0:98.1.0(1)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)",
    "0-1:24.1.0(003)",
    "0-1:96.1.0()",
    "0-1:24.2.1(170102161005W)(00000.107*m3)",
    "0-1:24.2.1(700101010000W)(00000000)",
    "0-2:24.2.1(632525252525S)(00000.000)",
    "0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(00001.001)",
]

# what a COM-1 gateway sends after each EasyMeter telegram: a counter and 0xFF padding
COM1_PADDING = b"  31415926\r\n" + b"\xff" * 33 + b"\r\n"
# what gateways send after the checksum line: nothing, that padding, a serial number, NULs
AFTER_TELEGRAM = [
    b"",
    COM1_PADDING,
    b"XY0000000000000000000000000000001\r\n",
    b"\x00" * 16,
]


def corrupt(frame: bytes) -> bytes:
    """The same telegram with one digit of its first power line changed (CRC unchanged)."""
    at = frame.index(b"1.7.0(") + 7
    digit = b"1" if frame[at : at + 1] != b"1" else b"2"
    return frame[:at] + digit + frame[at + 1 :]


def read_at_8n1(data: bytes) -> bytes:
    """What a port set to 8N1 reads of a 7E1 meter (DSMR 4, or DSMR 2.2 at the right
    baud rate): each character with its even parity bit as the eighth bit."""
    return bytes(byte | 0x80 if byte.bit_count() % 2 else byte for byte in data)


def kw(watts: float, digits: int = 2) -> str:
    """`00.244*kW` as DSMR 4 and 5 meters write it."""
    return f"{watts / 1000:0{digits + 4}.3f}*kW"


def dsmr5(
    import_w: float = 244,
    export_w: float = 0,
    phases_import_w: Sequence[float] = (70, 32, 142),
    phases_export_w: Sequence[float] = (0, 0, 0),
    voltages_v: Sequence[float] = (230.0, 230.0, 229.0),
    clock: str = "170102192002W",
) -> bytes:
    """An Iskra MT382's layout (DSMR 5.0, kW)."""
    return telegram(
        "ISk5\\2MT382-1000",
        [
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({clock})",
            "0-0:96.1.1(4B384547303034303436333935353037)",
            "1-0:1.8.1(000004.426*kWh)",
            "1-0:1.8.2(000002.399*kWh)",
            "1-0:2.8.1(000002.444*kWh)",
            "1-0:2.8.2(000000.000*kWh)",
            "0-0:96.14.0(0002)",
            f"1-0:1.7.0({kw(import_w)})",
            f"1-0:2.7.0({kw(export_w)})",
            "0-0:96.7.21(00013)",
            "0-0:96.7.9(00000)",
            "1-0:99.97.0(0)(0-0:96.7.19)",
            "1-0:32.32.0(00000)",
            "1-0:32.36.0(00000)",
            "0-0:96.13.0()",
            *(f"1-0:{c}.7.0({v:05.1f}*V)" for c, v in zip((32, 52, 72), voltages_v, strict=True)),
            "1-0:31.7.0(000*A)",
            "1-0:51.7.0(000*A)",
            "1-0:71.7.0(000*A)",
            *(f"1-0:{c}.7.0({kw(w)})" for c, w in zip((21, 41, 61), phases_import_w, strict=True)),
            *(f"1-0:{c}.7.0({kw(w)})" for c, w in zip((22, 42, 62), phases_export_w, strict=True)),
            "0-1:24.1.0(003)",
            "0-1:96.1.0(3232323241424344313233343536373839)",
            "0-1:24.2.1(170102161005W)(00000.107*m3)",
        ],
    )


def dsmr4(import_w: float = 2027, export_w: float = 0, clock: str = "161113205757W") -> bytes:
    """A Kaifa's layout (DSMR 4.2, kW, per-phase import only, no voltages)."""
    return telegram(
        "KFM5KAIFA-METER",
        [
            "1-3:0.2.8(42)",
            f"0-0:1.0.0({clock})",
            "0-0:96.1.1(4530303034303031353934373534343134)",
            "1-0:1.8.1(000123.456*kWh)",
            "1-0:2.8.1(000000.000*kWh)",
            "0-0:96.14.0(0001)",
            f"1-0:1.7.0({kw(import_w)})",
            f"1-0:2.7.0({kw(export_w)})",
            "0-0:96.7.21(00004)",
            "0-0:96.7.9(00002)",
            "1-0:99.97.0(2)(0-0:96.7.19)(000104180320W)(0000237126*s)(000101000001W)(2147483647*s)",
            "1-0:32.32.0(00000)",
            "0-0:96.13.1()",
            "0-0:96.13.0()",
            "1-0:31.7.0(001*A)",
            "1-0:21.7.0(00.170*kW)",
            "1-0:41.7.0(01.247*kW)",
            "1-0:61.7.0(00.209*kW)",
            "1-0:22.7.0(00.000*kW)",
            "1-0:42.7.0(00.000*kW)",
            "1-0:62.7.0(00.000*kW)",
            "0-1:24.1.0(003)",
            "0-1:24.2.1(161113200000W)(00981.443*m3)",
        ],
    )


def fluvius(import_w: float = 0, export_w: float = 1234, clock: str = "231102121548W") -> bytes:
    """A Belgian e-MUCS meter (Fluvius, DSMR 5 based, kW, with its extra lines)."""
    return telegram(
        "FLU5\\253769484_A",
        [
            "0-0:96.1.4(50217)",
            "0-0:96.1.1(3153414733313031303231363035)",
            f"0-0:1.0.0({clock})",
            "1-0:1.8.1(000301.548*kWh)",
            "1-0:1.8.2(000270.014*kWh)",
            "1-0:2.8.1(000000.005*kWh)",
            "1-0:2.8.2(000000.000*kWh)",
            "0-0:96.14.0(0001)",
            "1-0:1.4.0(02.351*kW)",
            "1-0:1.6.0(200509134558S)(02.589*kW)",
            "0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)"
            "(200401000000S)(200305122139S)(05.980*kW)(200301000000W)(200210035421W)(04.318*kW)",
            f"1-0:1.7.0({kw(import_w)})",
            f"1-0:2.7.0({kw(export_w)})",
            "1-0:21.7.0(00.000*kW)",
            "1-0:41.7.0(00.000*kW)",
            "1-0:61.7.0(00.000*kW)",
            "1-0:22.7.0(00.500*kW)",
            "1-0:42.7.0(00.400*kW)",
            "1-0:62.7.0(00.334*kW)",
            "1-0:32.7.0(232.9*V)",
            "1-0:52.7.0(228.1*V)",
            "1-0:72.7.0(228.1*V)",
            "1-0:31.7.0(002.10*A)",
            "0-0:96.3.10(1)",
            "0-0:17.0.0(999.9*kW)",
            "1-0:31.4.0(999*A)",
            "0-0:96.13.0()",
            "0-1:24.1.0(003)",
            "0-1:96.1.1(37464C4F32313139303333373333)",
            "0-1:24.4.0(1)",
            "0-1:24.2.3(200512134558S)(00112.384*m3)",
        ],
    )


def watts_meter(import_w: float = 0, export_w: float = 734, clock: str = "240615121314S") -> bytes:
    """A meter that states power in W (as Sagemcom T210-D and EasyMeter do), DSMR 5."""
    return telegram(
        "SAG5\\T210-D",
        [
            "1-3:0.2.8(50)",
            f"0-0:1.0.0({clock})",
            f"1-0:1.7.0({import_w:06.0f}*W)",
            f"1-0:2.7.0({export_w:06.0f}*W)",
            "1-0:21.7.0(000000*W)",
            f"1-0:22.7.0({export_w:06.0f}*W)",
            "1-0:32.7.0(231.4*V)",
        ],
    )


def easymeter_q3d(
    import_w: float = 2124.86, phases_import_w: Sequence[float] = (747.85, 737.28, 639.73)
) -> bytes:
    """An EasyMeter Q3D (as read through a COM-1 gateway): OBIS codes with the `*255`
    suffix, W with two decimals, no export lines, no clock and no CRC."""
    return telegram(
        "ESY5Q3DB1024 V3.04",
        [
            "1-0:0.0.0*255(1234567890123)",
            "1-0:1.8.0*255(00012345.6789012*kWh)",
            "1-0:2.8.0*255(00002345.6789012*kWh)",
            *(
                f"1-0:{c}.7.0*255({w:09.2f}*W)"
                for c, w in zip((21, 41, 61), phases_import_w, strict=True)
            ),
            f"1-0:1.7.0*255({import_w:09.2f}*W)",
            "1-0:96.5.5*255(80)",
            "0-0:96.1.255*255(1ESY1234567890)",
        ],
        crc=False,
    )


def phases_only(
    phases_import_w: Sequence[float] = (1500, 0, 250),
    phases_export_w: Sequence[float] = (0, 800, 0),
) -> bytes:
    """A meter without the 1.7.0 / 2.7.0 totals: only per-phase lines (DSMR 5, kW)."""
    return telegram(
        "XMX5LGBBFG10",
        [
            "1-3:0.2.8(50)",
            "0-0:1.0.0(240615121314S)",
            *(f"1-0:{c}.7.0({kw(w)})" for c, w in zip((21, 41, 61), phases_import_w, strict=True)),
            *(f"1-0:{c}.7.0({kw(w)})" for c, w in zip((22, 42, 62), phases_export_w, strict=True)),
        ],
    )


def encrypted(
    plain: bytes,
    key: bytes,
    authentication_key: bytes,
    system_title: bytes = b"SAGY\x00\x01\x02\x03",
    counter: int = 1,
) -> bytes:
    """A DLMS general-global-cipher frame, as Smarty and Sagemcom T210-D-r meters send:
    AES-128-GCM, IV = system title + invocation counter, authenticated data = security
    control byte + authentication key, a 12-byte tag."""
    security_control = 0x30  # authenticated and encrypted, suite 0
    iv = system_title + counter.to_bytes(4, "big")
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(bytes([security_control]) + authentication_key)
    ciphertext = encryptor.update(plain) + encryptor.finalize()
    body = bytes([security_control]) + counter.to_bytes(4, "big") + ciphertext + encryptor.tag[:12]
    return (
        bytes([0xDB, len(system_title)])
        + system_title
        + b"\x82"
        + len(body).to_bytes(2, "big")
        + body
    )


def meter_clock(second: int) -> str:
    """The meter's clock `second` s after 2 January 2017 19:20:00 winter time, as the
    timestamp line writes it: each telegram of a sequence needs its own (a telegram whose
    clock has not moved on is a re-sent one)."""
    start = datetime(2017, 1, 2, 19, 20) + timedelta(seconds=second)
    return start.strftime("%y%m%d%H%M%S") + "W"
