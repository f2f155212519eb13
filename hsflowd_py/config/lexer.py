"""Tokenizer for the hsflowd.conf language.

The established agent's language has no escapes and no string type: a value is
whatever lies between separators, and double quotes merely switch separators
off.  So a quote can sit anywhere inside a word (``a"b c"d`` is ``ab cd``), and
stripping every quote character from a word gives exactly that meaning.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .errors import ConfigError

_SEPARATORS = " \t\r\n=;"

# Every character of the input is matched by exactly one alternative, so
# finditer never skips text silently; an unpaired quote is the only leftover.
_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<newline>\n)
  | (?P<space>[ \t\r=;]+)
  | (?P<brace>[{}])
  | (?P<word>(?:[^ \t\r\n=;{}\#"]+|"[^"]*")+)
  | (?P<badquote>")
    """,
    re.VERBOSE,
)


class Kind(enum.Enum):
    WORD = "word"
    OPEN = "{"
    CLOSE = "}"


@dataclass(frozen=True, slots=True)
class Token:
    """A word or brace, with the line it starts on for error messages."""

    kind: Kind
    text: str
    line: int


def tokenize(text: str, source: str = "<string>") -> list[Token]:
    """Split ``text`` into tokens; an unterminated quote is a ConfigError at its line."""
    tokens: list[Token] = []
    line = 1
    for match in _TOKEN.finditer(text):
        group, lexeme = match.lastgroup, match.group()
        if group == "word":
            tokens.append(Token(Kind.WORD, lexeme.replace('"', ""), line))
        elif group == "brace":
            tokens.append(Token(Kind(lexeme), lexeme, line))
        elif group == "badquote":
            raise ConfigError("unterminated double quote", source, line)
        line += lexeme.count("\n")
    return tokens


def quote(value: str) -> str:
    """Spell ``value`` so that tokenize() reads it back as one word.

    The language has no escape for a double quote, but no parsed value can hold
    one either (tokenize strips them), so every value that came from a file
    round-trips.
    """
    if value and not any(ch in _SEPARATORS or ch in "{}#" for ch in value):
        return value
    return f'"{value}"'
