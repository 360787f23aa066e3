"""Sizes and counts take ASCII digits only: other scripts' digits (fullwidth, Arabic-Indic,
superscripts) are refused with a message that says so, never read as a number."""

import pytest

from sparsearch.cli.prune import parse_count
from sparsearch.errors import ConfigError
from sparsearch.units import parse_size

NON_ASCII = ["２４KiB", "٢٤KiB", "2４KiB", "24KiB\u00a0", "²KiB", "۲۴", "1.５MB", "2４"]


@pytest.mark.parametrize("text", NON_ASCII)
def test_parse_size_refuses_non_ascii(text):
    with pytest.raises(ConfigError) as info:
        parse_size(text, what="--flash")
    assert "ASCII" in info.value.message
    assert "--flash" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("text", ["２００k", "٢٠٠٠٠", "1.５M"])
def test_parse_count_refuses_non_ascii(text):
    with pytest.raises(ConfigError) as info:
        parse_count(text, what="--target-macs")
    assert "ASCII" in info.value.message


@pytest.mark.parametrize(("text", "expected"), [(" 24KiB ", 24576), ("24 KiB", 24576), ("7", 7)])
def test_ascii_sizes_still_parse(text, expected):
    assert parse_size(text) == expected


def test_cli_refuses_fullwidth_flash(tmp_path):
    from typer.testing import CliRunner

    from sparsearch.cli import app

    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["search", "--flash", "２４KiB", "--db", db])
    assert result.exit_code == 2, result.output
    assert "ASCII" in result.output
    assert "Traceback" not in result.output
