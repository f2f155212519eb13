"""Tokenizer: separators, glued braces, quotes, comments and line numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsflowd_py.config import ConfigError
from hsflowd_py.config.lexer import Kind, Token, quote, tokenize


def words(text: str) -> list[str]:
    return [token.text for token in tokenize(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sflow { polling = 30 }", ["sflow", "{", "polling", "30", "}"]),
        ("collector{ip=1.2.3.4}", ["collector", "{", "ip", "1.2.3.4", "}"]),
        ("a;b=c\td\re\nf", ["a", "b", "c", "d", "e", "f"]),
        ("a == ;; b", ["a", "b"]),
        ('dev.pattern = "eth 0{1}"', ["dev.pattern", "eth 0{1}"]),
        ('a"b c"d', ["ab cd"]),
        ('x = ""', ["x", ""]),
        ('x = "a#b" # comment', ["x", "a#b"]),
        ("x = 1# glued comment\ny", ["x", "1", "y"]),
        ("# only a comment", []),
        ("", []),
        ("}{", ["}", "{"]),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_kinds_and_lines() -> None:
    tokens = tokenize('sflow {\r\n  # note\n  x = "{"\n}\n')
    assert tokens == [
        Token(Kind.WORD, "sflow", 1),
        Token(Kind.OPEN, "{", 1),
        Token(Kind.WORD, "x", 3),
        Token(Kind.WORD, "{", 3),  # a quoted brace is a value, not a block
        Token(Kind.CLOSE, "}", 4),
    ]


def test_multiline_quote_keeps_its_start_line_and_advances_the_count() -> None:
    tokens = tokenize('a "b\nc"\nd')
    assert [(t.text, t.line) for t in tokens] == [("a", 1), ("b\nc", 1), ("d", 3)]


def test_unterminated_quote_reports_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        tokenize('sflow {\n  x = "abc\n}\n', "f.conf")
    assert (info.value.source, info.value.line) == ("f.conf", 2)
    assert "unterminated" in str(info.value)


@given(st.text(alphabet=st.characters(blacklist_characters='"', blacklist_categories=("Cs",))))
def test_quote_round_trips(value: str) -> None:
    assert tokenize(quote(value)) == [Token(Kind.WORD, value, 1)]


def test_quote_leaves_plain_words_alone() -> None:
    assert quote("eth0") == "eth0"
    assert quote("a b") == '"a b"'
