"""The broker connection's topic filters match exactly as paho's `topic_matches_sub`."""

from __future__ import annotations

import paho.mqtt.client as paho
from hypothesis import given
from hypothesis import strategies as st

from p1evse.mqtt import TopicFilter

LEVELS = st.sampled_from(["a", "b", "", "$SYS", "$x", "dsmr", "+", "#"])


def joined(levels: list[str]) -> str:
    return "/".join(levels)


@st.composite
def filters(draw: st.DrawFn) -> str:
    """Valid filters: `#` only last and whole, `+` whole levels."""
    levels = draw(st.lists(LEVELS.filter(lambda level: level != "#"), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    return joined(levels)


TOPICS = st.lists(LEVELS.filter(lambda level: level not in ("+", "#")), min_size=1, max_size=6)


@given(filters(), TOPICS)
def test_a_filter_matches_as_paho_says(text: str, topic: list[str]) -> None:
    assert TopicFilter(text).matches(topic) == paho.topic_matches_sub(text, joined(topic))


def test_the_rules_that_matter() -> None:
    assert TopicFilter("dsmr/+/reading").matches(["dsmr", "h1", "reading"])
    assert not TopicFilter("dsmr/+/reading").matches(["dsmr", "h1", "reading", "x"])
    assert TopicFilter("a/#").matches(["a"])  # '#' takes the parent level too
    assert not TopicFilter("+/x").matches(["$SYS", "x"])
    assert not TopicFilter("#").matches(["$SYS"])
    assert TopicFilter("$SYS/#").matches(["$SYS", "broker"])
