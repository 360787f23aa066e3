import pytest

from sparsearch.errors import ConfigError
from sparsearch.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24KiB", 24576),
        ("24KB", 24000),
        ("6144", 6144),
        ("1MiB", 1048576),
        ("1.5MB", 1500000),
        ("2 kib", 2048),
        (512, 512),
    ],
)
def test_parse_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0", "-5KiB", "abc", "12XB", "", "KiB", True, 0, -1])
def test_parse_size_rejects_with_hint(text):
    with pytest.raises(ConfigError) as info:
        parse_size(text, what="--flash")
    assert "--flash" in info.value.message
    assert info.value.hint


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(24576) == "24.0 KiB"
    assert format_size(None) == "-"
