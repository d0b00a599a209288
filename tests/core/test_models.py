"""event_from: the pixel path's Event builder must make exactly what Event(...) makes."""

from __future__ import annotations

import dataclasses

import pytest

from relay.core.models import Event, event_from


def sample() -> Event:
    return Event(
        kind="click", copy_id=7, message_id="m", recipient="b@example.net", at=1.5,
        ip="192.0.2.1", user_agent="UA", klass="bot", reasons=("x",), url="https://e.example/",
        link_index=2, inferred=True, id=9, extra={"client": "ua|192.0.2.0/24"},
    )  # fmt: skip


def test_a_copy_with_changes_equals_replace_and_leaves_the_original() -> None:
    event = sample()
    changed = event_from(vars(event), id=10, recipient=None)
    assert changed == dataclasses.replace(event, id=10, recipient=None)
    assert event.id == 9 and event.recipient == "b@example.net"


def test_every_field_given_makes_the_same_frozen_event() -> None:
    fields = {f.name: getattr(sample(), f.name) for f in dataclasses.fields(Event)}
    built = event_from(fields)
    assert built == sample() and repr(built) == repr(sample())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 1  # type: ignore[misc]
