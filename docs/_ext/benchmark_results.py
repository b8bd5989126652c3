"""Sphinx extension: benchmark result files -> ``generated/benchmark_results.inc``.

The benchmark scripts write markdown (``benchmarks/results/*.md``); the docs have no
markdown parser, so this converts the little markdown they use -- ``#`` headings, pipe
tables, fenced code, paragraphs -- to reStructuredText that ``results.rst`` includes.
"""

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
TARGET = "generated/benchmark_results.inc"  # not a source suffix: only included
_UNDERLINES = {1: "-", 2: "~", 3: "^"}


def _cells(line: str) -> list[str]:
    return [_escape(c.strip()) for c in line.strip().strip("|").split("|")]


def _escape(cell: str) -> str:
    """A cell such as ``-`` or ``* x`` would start a nested list in a list-table."""
    if cell[:1] in ("-", "*", "+") and (len(cell) == 1 or cell[1] == " "):
        return "\\" + cell
    return cell


def _table(rows: list[str]) -> list[str]:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *body]:
        row = (row + [""] * len(header))[: len(header)]
        out.append(f"   * - {row[0] or ' '}")
        out += [f"     - {c or ' '}" for c in row[1:]]
    return [*out, ""]


def markdown_to_rst(text: str) -> str:
    """Convert headings, pipe tables, fenced code and paragraphs."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out += [".. code-block:: text", ""] + [f"   {b}" for b in block] + [""]
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 3)
            title = line.lstrip("#").strip()
            out += [title, _UNDERLINES[level] * max(len(title), 3), ""]
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and "---" in lines[i + 1]:
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            out += _table(rows)
            continue
        else:
            out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def render(results: Path = RESULTS) -> str:
    files = sorted([*results.glob("*.md"), *results.glob("*/*.md")]) if results.is_dir() else []
    if not files:
        return (
            ".. note::\n\n   No benchmark result files yet (``benchmarks/results/*.md``); "
            "the commands above write them.\n"
        )
    parts = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        if not text.lstrip().startswith("#"):
            title = path.stem.replace("_", " ")
            text = f"# {title}\n\n{text}"
        parts.append(markdown_to_rst(text))
        parts.append(f"*Source:* ``{path.relative_to(results.parent.parent).as_posix()}``\n")
    return "\n".join(parts)


def write_results(app) -> None:
    target = Path(app.srcdir, TARGET)
    content = render()
    if not target.is_file() or target.read_text(encoding="utf-8") != content:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", write_results)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
