"""Validation of lines and zones: bad input is refused with an error naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.detect.rules_settings import CameraRules, describe_validation_error


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as ei:
        CameraRules.model_validate(data)
    return describe_validation_error(ei.value)


def test_valid_rules_parse_with_defaults() -> None:
    r = CameraRules.model_validate(
        {
            "lines": [
                {"name": "stop-line", "points": [[0.1, 0.6], [0.9, 0.6]], "allowed_direction": "forward"}
            ],
            "zones": [
                {
                    "name": "bus_stop",
                    "points": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]],
                    "kind": "dwell",
                    "dwell_s": 30,
                },
                {
                    "name": "lane",
                    "points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                    "kind": "wrong_way",
                    "allowed_direction": [0, 1],
                },
            ],
        }
    )
    assert r.lines[0].classes == ["bicycle", "car", "motorcycle", "bus", "truck"]
    assert r.zones[0].dwell_s == 30


def test_point_outside_frame_names_the_coordinate() -> None:
    assert problems({"lines": [{"name": "a", "points": [[0.1, 0.5], [1.2, 0.5]]}]}) == [
        "lines[0].points[1][0]: Input should be less than or equal to 1"
    ]


def test_self_intersecting_polygon_is_refused() -> None:
    (msg,) = problems(
        {"zones": [{"name": "bow", "points": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]}
    )
    assert msg.startswith("zones[0].points: polygon is self-intersecting: edge 0-1 crosses edge 2-3")


def test_polygon_needs_three_points() -> None:
    (msg,) = problems({"zones": [{"name": "z", "points": [[0.1, 0.1], [0.5, 0.5]]}]})
    assert msg.startswith("zones[0].points: List should have at least 3 items")


def test_degenerate_polygon_and_repeated_points_are_refused() -> None:
    (m1,) = problems({"zones": [{"name": "z", "points": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}]})
    assert "area is too small" in m1
    (m2,) = problems({"zones": [{"name": "z", "points": [[0.1, 0.1], [0.1, 0.1], [0.3, 0.5]]}]})
    assert "points 0 and 1 are identical" in m2


def test_names_must_be_unique_across_lines_and_zones() -> None:
    (msg,) = problems(
        {
            "lines": [{"name": "x", "points": [[0.1, 0.5], [0.9, 0.5]]}],
            "zones": [{"name": "x", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}],
        }
    )
    assert "zones[0].name: 'x' is already used by lines[0]" in msg


def test_kind_specific_fields_are_required() -> None:
    (m1,) = problems(
        {"zones": [{"name": "z", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "kind": "dwell"}]}
    )
    assert m1 == "zones[0]: zone 'z': kind 'dwell' requires dwell_s"
    (m2,) = problems(
        {
            "zones": [
                {
                    "name": "z",
                    "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]],
                    "kind": "wrong_way",
                    "allowed_direction": [0, 0],
                }
            ]
        }
    )
    assert m2 == "zones[0].allowed_direction: must be a finite, non-zero vector [dx, dy]"


def test_unknown_class_unknown_field_and_bad_name() -> None:
    msgs = problems(
        {"lines": [{"name": "bad name", "points": [[0.1, 0.5], [0.9, 0.5]], "classes": ["dog"], "colour": 1}]}
    )
    assert any(m.startswith("lines[0].name: String should match pattern") for m in msgs)
    assert any(m.startswith("lines[0].classes[0]: Input should be 'person'") for m in msgs)
    assert "lines[0].colour: Extra inputs are not permitted" in msgs


def test_line_points_must_differ() -> None:
    (msg,) = problems({"lines": [{"name": "a", "points": [[0.5, 0.5], [0.5, 0.505]]}]})
    assert msg == "lines[0].points: the two points must be at least 0.01 apart"
