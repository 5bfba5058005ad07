"""Words as Docker and /bin/sh read them: quotes, `$VAR` expansion, command operators.

`expand_word` is BuildKit's `shell.Lex.ProcessWord` for the instructions Docker
expands (ENV, ARG, COPY, ADD, WORKDIR, USER, EXPOSE, FROM; see the Dockerfile
reference, "Environment replacement"): single quotes are literal, double quotes
group and expand, a backslash escapes, and `$X`, `${X}`, `${X:-default}`,
`${X:+alternative}` (and their forms without the colon) are replaced.

`split_commands` reads a RUN's shell form into simple commands joined by `&&`, `||`,
`;` or `|`, each with its words expanded against the RUN's environment, as /bin/sh
would before running them; a command with a redirection keeps it as a word of its
own (`>`), so that the caller can see it is not a plain command.
"""

from __future__ import annotations

from collections.abc import Mapping

_OPERATORS = ("&&", "||", ";", "|", "&")
_REDIRECTIONS = (">>", ">", "<", "2>", "2>>", "&>")


def _name_end(text: str, start: int) -> int:
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return end


def _variable(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    """Expand the `$...` at `start`; return (value, index after it)."""
    if start + 1 < len(text) and text[start + 1] == "{":
        close = text.find("}", start + 2)
        if close < 0:
            return text[start:], len(text)
        body = text[start + 2 : close]
        name_end = _name_end(body, 0)
        name, rest = body[:name_end], body[name_end:]
        value = env.get(name)
        for operator in (":-", ":+", "-", "+"):
            if rest.startswith(operator):
                word = expand_word(rest[len(operator) :], env)
                is_set = value is not None and (value != "" or ":" not in operator)
                if operator.endswith("-"):
                    return (value if is_set and value is not None else word), close + 1
                return (word if is_set else ""), close + 1
        return (value or ""), close + 1
    end = _name_end(text, start + 1)
    if end == start + 1:
        return "$", start + 1
    return env.get(text[start + 1 : end], ""), end


def expand_word(text: str, env: Mapping[str, str]) -> str:
    """One word, Docker's way: quotes removed, escapes applied, variables expanded."""
    out: list[str] = []
    index, quote = 0, ""
    while index < len(text):
        char = text[index]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
            index += 1
        elif char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
        elif char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
            index += 1
        elif char == "$":
            value, index = _variable(text, index, env)
            out.append(value)
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, is_operator) of a shell line: words keep their quotes for `expand_word`."""
    tokens: list[tuple[str, bool]] = []
    word: list[str] = []
    quote = ""
    index = 0

    def flush() -> None:
        if word:
            tokens.append(("".join(word), False))
            word.clear()

    while index < len(text):
        char = text[index]
        if quote:
            word.append(char)
            if char == "\\" and quote == '"' and index + 1 < len(text):
                word.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char == "\\" and index + 1 < len(text):
            if text[index + 1] != "\n":
                word.extend(text[index : index + 2])
            index += 1
        elif char in "'\"":
            quote = char
            word.append(char)
        elif char.isspace():
            flush()
        elif char == "#" and not word:
            break  # a comment runs to the end of the line
        elif char in ";&|<>":
            redirect = "".join(word) == "2" and char == ">"
            if not redirect:
                flush()
            operator = (
                text[index : index + 2]
                if text[index : index + 2] in _OPERATORS + _REDIRECTIONS
                else char
            )
            if redirect:
                word.clear()
                operator = "2" + operator
            tokens.append((operator, operator in _OPERATORS))
            index += len(operator.removeprefix("2")) - 1
        else:
            word.append(char)
        index += 1
    flush()
    return tokens


def split_commands(text: str, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """[(operator before it, words)] of each simple command; the first operator is ";"."""
    commands: list[tuple[str, list[str]]] = [(";", [])]
    for token, is_operator in _tokens(text.replace("\n", " ; ")):
        if is_operator:
            commands.append((token, []))
        elif token in _REDIRECTIONS or token.startswith("2>"):
            commands[-1][1].append(token)
        else:
            commands[-1][1].append(expand_word(token, env))
    return [(operator, words) for operator, words in commands if words]
