"""The documentation holds together: docs/cli.md is what the Typer app generates today, and
every relative link and #anchor in README.md and docs/*.md leads somewhere (anchors by
GitHub's heading slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sparsearch.cli._docgen import CLI_DOC, REGENERATE, render

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def test_cli_reference_is_current() -> None:
    committed = (ROOT / CLI_DOC).read_text(encoding="utf-8")
    assert committed == render(), (
        f"{CLI_DOC} is stale: regenerate it with `{REGENERATE}` from the repository root "
        "and commit the result"
    )


def test_cli_reference_has_every_command() -> None:
    text = render()
    for command in ("search", "pull", "finalize", "prune", "token revoke", "db upgrade"):
        assert f"## `sparsearch {command}`" in text


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (markup stripped), lower case, punctuation
    other than - and _ removed, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on ``page``; repeats get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return LINK.findall(text)


def test_slugs_follow_github() -> None:
    assert slug("The `sparsearch search` command") == "the-sparsearch-search-command"
    assert slug("Run it as a service (REST, dashboard)") == "run-it-as-a-service-rest-dashboard"
    assert slug("`state_dict` and **ONNX**") == "state_dict-and-onnx"
    assert slug("Quick start: 3 steps") == "quick-start-3-steps"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\n[ok](#two-words) [bad](#three-words) [file](missing.md)\n"
        "```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"title", "two-words"}
    assert links(page) == ["#two-words", "#three-words", "missing.md"]
