"""Every Python snippet of README.md and docs/python.md runs, in order, as a reader would paste them into one
session in a scratch folder beside the examples. A line `print(...)  # prints: TEXT` must print TEXT."""

import os
import re
import subprocess
import sys

import pytest

from conftest import SOURCE_DIR

DOCUMENTS = ["README.md", os.path.join("docs", "python.md")]
PRINTS = re.compile(r"^(\s*)print\(.*\)\s*# prints: (.*)$")


def snippets(document):
    with open(os.path.join(SOURCE_DIR, document), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def instrumented(code):
    """The code with a marker after each annotated print: the line before it must be the annotation."""
    out = []
    for line in code.splitlines():
        out.append(line)
        m = PRINTS.match(line)
        if m:
            out.append(f"{m.group(1)}print('@@expect ' + {m.group(2)!r})")
    return "\n".join(out) + "\n"


CASES = [(doc, i) for doc in DOCUMENTS for i in range(len(snippets(doc)))]


def test_the_documents_have_python_snippets():
    assert len(snippets("README.md")) >= 2 and len(snippets(os.path.join("docs", "python.md"))) >= 2


@pytest.mark.parametrize("document, index", CASES, ids=[f"{d}#{i}" for d, i in CASES])
def test_snippet_runs_and_prints_what_it_says(document, index, tmp_path, bin_path):
    os.symlink(os.path.join(SOURCE_DIR, "examples"), tmp_path / "examples")
    program = "".join(instrumented(code) for code in snippets(document)[: index + 1])
    env = dict(os.environ, PATH=os.path.dirname(bin_path) + os.pathsep + os.environ.get("PATH", ""))
    p = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, f"{document} snippet {index} failed:\n{p.stdout}\n{p.stderr}"
    lines = p.stdout.splitlines()
    expected = [(i, line[len("@@expect "):]) for i, line in enumerate(lines) if line.startswith("@@expect ")]
    for at, text in expected:
        assert at > 0 and lines[at - 1] == text, f"expected {text!r}, printed {lines[at - 1]!r}\n{p.stdout}"
