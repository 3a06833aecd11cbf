"""Runs the Python blocks of README.md and docs/*.md as tests (Sybil).

Every ```python block is a complete runnable example, or is marked as a listing (signatures,
not code) with ``<!-- skip: next "listing" -->`` on the line before it. tests/test_docs.py
checks that every block is one of the two.
"""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
).pytest()
