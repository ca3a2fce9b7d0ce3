"""The code blocks of the README's "Your conventions" and derivatives sections run as they
stand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Your conventions"

# Blocks that show an error by printing it: what the printed message must say.
PRINTED = {
    "np.matrix(": "does not convert silently",
    "model.params)\nexcept ValueError": "does not depend on the argument it is given",
}


def section_blocks(section: str = SECTION) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    body = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


BLOCKS = section_blocks()


def test_the_section_has_its_examples():
    assert len(BLOCKS) >= 5
    for marker in PRINTED:  # each printed error belongs to exactly one block
        assert sum(marker in block for block in BLOCKS) == 1, marker


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index, capsys):
    block = BLOCKS[index]
    if "scipy" in block:
        pytest.importorskip("scipy")
    exec(compile(block, f"README.md[{SECTION!r} block {index}]", "exec"),
         {"__name__": f"readme_block_{index}"})
    out = capsys.readouterr().out
    for marker, message in PRINTED.items():
        if marker in block:
            assert message in out, out


def test_derivatives_block_prints_what_its_comments_say(capsys):
    pytest.importorskip("scipy")
    (block,) = section_blocks("## Beyond gradients")
    exec(compile(block, "README.md[derivatives]", "exec"), {"__name__": "readme_derivatives"})
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "pass"
    verdict, groups, _ = lines[1].split()
    assert (verdict, groups) == ("pass", "3")
    assert lines[2] == "pass pass pass"
