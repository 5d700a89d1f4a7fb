"""The documentation stays true to the tree: links resolve, the reference
lists every public name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO_ROOT / "examples" / "chat" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``."""
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no {linked.relative_to(REPO_ROOT)})")
        elif fragment and linked.suffix == ".md":
            if fragment not in heading_anchors(linked):
                broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"broken links in {page.relative_to(REPO_ROOT)}: {broken}"


def test_reference_lists_every_public_name() -> None:
    # In a subprocess: the generator configures Django settings for itself.
    listed = subprocess.run(
        [sys.executable, str(DOCS / "gen_reference.py"), "--list"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    reference = (DOCS / "reference.md").read_text()
    sections = re.split(r"^## ", reference, flags=re.MULTILINE)
    documented = set()
    for section in sections[1:]:
        module = section.split("`", 2)[1]
        documented |= {
            f"{module}.{name}" for name in re.findall(r"^### `(\w+)`", section, re.M)
        }
    missing = sorted(set(listed) - documented)
    assert not missing, (
        f"docs/reference.md lacks {missing}: run python docs/gen_reference.py"
    )
