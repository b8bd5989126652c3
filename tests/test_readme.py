"""The code blocks of README.md and of the docs' front page run as they are."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _markdown_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def _rst_blocks(path: Path) -> list[str]:
    blocks = []
    for body in re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", path.read_text()):
        blocks.append("\n".join(line[3:] for line in body.splitlines()))
    return blocks


BLOCKS = [("README.md", i, b) for i, b in enumerate(_markdown_blocks(ROOT / "README.md"))] + [
    ("docs/index.rst", i, b) for i, b in enumerate(_rst_blocks(ROOT / "docs" / "index.rst"))
]


def test_every_page_has_its_code_block():
    assert {page for page, _, _ in BLOCKS} == {"README.md", "docs/index.rst"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page, index, code", BLOCKS, ids=lambda v: str(v)[:20])
def test_the_code_block_runs(page, index, code, tmp_path, monkeypatch, capsys, one_torch_thread):
    monkeypatch.chdir(tmp_path)  # nothing may be written next to the sources
    exec(compile(code, f"{page} block {index}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "default:" in out and "evolved loss:" in out
    assert list(tmp_path.iterdir()) == []
