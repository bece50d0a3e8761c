"""The source registry as a whole."""

from __future__ import annotations

import typing

from p1evse.sources.build import SOURCE_TYPES, SourceSettings
from tests.imports import loaded_after

HEAVY = ("aiohttp", "serialx", "cryptography", "dlms_cosem", "dsmr_parser.parsers")


def test_every_registered_source_is_in_the_settings_union() -> None:
    union, _ = typing.get_args(SourceSettings)
    models = set(typing.get_args(union))
    assert models == {model for model, _ in SOURCE_TYPES.values()}
    for name, (model, _) in SOURCE_TYPES.items():
        assert model.model_fields["type"].default == name
        assert callable(getattr(model, "subscriptions", None))
        assert callable(getattr(model, "describe", None))


def test_building_a_source_imports_no_heavy_library() -> None:
    """aiohttp, serialx and dsmr-parser's parser (with cryptography) cost 2-12 MB of
    memory each: they are imported when a source that needs them starts, not before."""
    code = (
        "import p1evse.app\n"
        "from p1evse.config import Settings\n"
        "from p1evse.sources.build import build_source\n"
        "for source in ({'type': 'p1', 'url': 'tcp://127.0.0.1:1'},\n"
        "               {'type': 'homewizard', 'host': '127.0.0.1'}, {'type': 'mqtt_telegram'}):\n"
        "    build_source(Settings(source=source).source, None)"
    )
    assert loaded_after(code, *HEAVY) == []
