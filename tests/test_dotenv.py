"""The dotenv parser keeps every value exactly, the seed's `.env.prod` included."""

from __future__ import annotations

import pytest

from deployer.dotenv import parse_dotenv, read_dotenv
from deployer.errors import DotenvError

SEED_STYLE = """\
# production settings
export MONGODB_URL="mongodb+srv://user:p@ss=word@cluster0.example.net/db?retryWrites=true&w=majority"
SECRET_KEY='a,b,c=d "quoted" $NOT_EXPANDED'
CORS_ORIGINS=https://a.example.com,https://b.example.com   # two origins
EMPTY=
SPACED = value with spaces
MULTI="line one
line two"
ESCAPES="tab\\there\\nnewline \\"q\\" back\\\\slash"
HASH_IN_VALUE=abc#def
"""


def test_values_survive_exactly() -> None:
    values = parse_dotenv(SEED_STYLE)
    assert values == {
        "MONGODB_URL": "mongodb+srv://user:p@ss=word@cluster0.example.net/db?retryWrites=true&w=majority",
        "SECRET_KEY": 'a,b,c=d "quoted" $NOT_EXPANDED',
        "CORS_ORIGINS": "https://a.example.com,https://b.example.com",
        "EMPTY": "",
        "SPACED": "value with spaces",
        "MULTI": "line one\nline two",
        "ESCAPES": 'tab\there\nnewline "q" back\\slash',
        "HASH_IN_VALUE": "abc#def",
    }
    assert list(values) == [
        "MONGODB_URL",
        "SECRET_KEY",
        "CORS_ORIGINS",
        "EMPTY",
        "SPACED",
        "MULTI",
        "ESCAPES",
        "HASH_IN_VALUE",
    ]


def test_last_assignment_wins_and_crlf_is_fine() -> None:
    assert parse_dotenv("A=1\r\nA=2\r\n") == {"A": "2"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("GOOD=1\nnot a line\n", 2),
        ('A="never closed\nB=2\n', 1),
        ("A='x' trailing\n", 1),
        ("1BAD=x\n", 1),
    ],
)
def test_errors_name_the_line_and_never_the_value(text: str, line: int) -> None:
    with pytest.raises(DotenvError) as caught:
        parse_dotenv(text, source=".env.prod")
    assert f".env.prod, line {line}:" in str(caught.value)
    assert "never closed" not in str(caught.value)
    assert "trailing" not in str(caught.value)


def test_references_other_readers_would_expand_are_noted_values_kept() -> None:
    text = (
        "A=${B}\n"
        'C="x $HOME y \\${ESCAPED} $$COMPOSE ${D:-a default} $HOME"\n'
        "E='$SINGLE ${QUOTED}'\n"
        "F=plain$ and $ alone\n"
        "A=again ${G}\n"
    )
    dotenv = read_dotenv(text)
    assert dotenv.values == {
        "A": "again ${G}",
        "C": "x $HOME y ${ESCAPED} $$COMPOSE ${D:-a default} $HOME",
        "E": "$SINGLE ${QUOTED}",
        "F": "plain$ and $ alone",
    }
    assert dotenv.values == parse_dotenv(text)
    # Each once, in order, as written; none in single quotes, after `\$` or `$$`.
    assert {name: [str(ref) for ref in refs] for name, refs in dotenv.references.items()} == {
        "A": ["${G}"],
        "C": ["$HOME", "${D}"],
    }
