"""The documentation stays true to the code: docs/columns.md is the schema's, every relative link in
README.md and docs/*.md resolves (file and heading), and the README's test command is the one CI runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from akdray import columns, schema
from akdray.config import FIELD_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def test_columns_doc_matches_the_schema():
    assert columns.DOC.read_text() == columns.markdown(), \
        f"docs/columns.md is out of date with the results schema: run `{columns.COMMAND}` and commit it"


def test_every_column_meaning_names_a_real_column():
    """A meaning whose column left the schema is stale, not harmless."""
    names = {f.name for f in columns.result_schema()}
    names |= {*schema.SCORE_COLUMNS, *schema.SAMPLE_COLUMNS, *columns.key_columns()}
    assert set(columns.MEANINGS) - names == set()
    assert set(columns.SUFFIX_MEANINGS) == set(schema.ATTACK_SUFFIXES)
    assert set(schema.ATTACKS) <= set(columns.ATTACK_MEANINGS)
    every_column = columns.markdown()
    for f in columns.result_schema():
        assert f"| `{f.name}` | {f.type} |" in every_column


def test_config_comments_are_read_from_runconfig():
    notes = columns.config_comments()
    assert "generator width" in notes["ngf"]  # a trailing comment
    assert notes["n_val"].startswith("validation non-members")  # the comment block above the field
    assert set(notes) == set(FIELD_TYPES)  # every field, with "" where the code has no comment


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _unfenced(path.read_text()).splitlines():  # headings keep their `code` words
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = _slug(m.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def _unfenced(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_link_checker_sees_links_and_anchors():
    """The checker itself: it finds links outside code and computes GitHub's anchors."""
    assert _links(ROOT / "README.md"), "no links found in README.md"
    assert _slug("`bench_attacks.py`: calibrated attacks (issue #8)") == "bench_attackspy-calibrated-attacks-issue-8"
    assert _prose("a `[x](nowhere.md)` b\n```\n[y](nowhere.md)\n```\n") .count("nowhere") == 0


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in ci if re.match(r"\s*(python -m )?pytest\b", line)]
    assert len(commands) == 1, commands
    assert f"\n{commands[0]}\n" in (ROOT / "README.md").read_text()
    assert "pip install -q -e '.[dev]'" in "\n".join(ci)  # so the analysis package is installed too
