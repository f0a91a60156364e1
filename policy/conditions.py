"""CEL conditions: compiled once per load, evaluated per request.

A condition sees every request param as a top-level name (``amount > 500``), plus
``params`` (the whole map) and ``context`` (what the agent said about the request).
Uses the ``common-expression-language`` bindings (Rust ``cel``): about 5 µs per
evaluation here, against 100 µs for the pure-Python ``cel-python``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

from policy.errors import ConditionError
from policy.types import RequestContext

RESERVED = frozenset({"params", "context"})
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*?)(?:\n|$)")
_CONTEXT_NAME = re.compile(r"(?<![\w.])context\s*\.\s*([A-Za-z_]\w*)")
CONTEXT_FIELDS = frozenset(RequestContext.model_fields)
_MACRO_VAR = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ConditionSyntaxError(ValueError):
    """A condition does not compile; ``line``/``column`` are 1-based, inside the expression."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled CEL condition."""

    source: str
    program: Any
    names: frozenset[str]

    def evaluate(self, params: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
        """True if the condition holds for these params.

        Raises:
            ConditionError: a field is missing, has the wrong type, or the result is not a bool.
        """
        activation = {**params, "params": params, "context": context}
        missing = [n for n in self.names if n not in activation]
        if missing:
            raise ConditionError(f"condition `{self.source}` needs field '{missing[0]}', which the request lacks")
        try:
            result = self.program.execute(activation)
        except KeyError as exc:
            raise ConditionError(f"condition `{self.source}` needs field {exc}, which the request lacks") from exc
        except Exception as exc:  # the bindings raise TypeError/RuntimeError/ZeroDivisionError...
            first = str(exc).split(". ")[0]
            raise ConditionError(f"condition `{self.source}` could not be evaluated: {first}") from exc
        if not isinstance(result, bool):
            raise ConditionError(f"condition `{self.source}` gave {result!r}, not true or false")
        return result


def compile_condition(source: str, declared: list[str] | None = None) -> Condition:
    """Compile a CEL expression.

    Args:
        source: the expression.
        declared: the action's declared param names, if it declares them; any other
            top-level name is then an error.

    Raises:
        ConditionSyntaxError: with the line and column inside ``source``.
    """
    try:
        program = cel.compile(source)
    except ValueError as exc:
        m = _POSITION.search(str(exc))
        if m:
            raise ConditionSyntaxError(_readable(m.group(3).strip()), int(m.group(1)), int(m.group(2))) from exc
        raise ConditionSyntaxError(_readable(str(exc)), 1, 1) from exc
    bound = set(_MACRO_VAR.findall(source))
    names = frozenset(program.variables()) - bound - RESERVED
    if declared is not None:
        for name in sorted(names):
            if name not in declared:
                line, column = _locate(source, name)
                close = difflib.get_close_matches(name, declared, n=1)
                hint = (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else f"; declared params: {', '.join(declared) or '(none)'}"
                )
                raise ConditionSyntaxError(f"'{name}' is not a request field{hint}", line, column)
    _check_context_names(source)
    return Condition(source=source, program=program, names=names)


def _check_context_names(source: str) -> None:
    """``context.confidnce`` would never hold for any request: caught at load time, like a param typo."""
    for match in _CONTEXT_NAME.finditer(source):
        name = match.group(1)
        if name in CONTEXT_FIELDS:
            continue
        before = source[: match.start(1)]
        line, column = before.count("\n") + 1, match.start(1) - (before.rfind("\n") + 1) + 1
        close = difflib.get_close_matches(name, sorted(CONTEXT_FIELDS), n=1)
        known = ", ".join(sorted(CONTEXT_FIELDS))
        hint = f"; did you mean 'context.{close[0]}'?" if close else f"; context has: {known}"
        raise ConditionSyntaxError(f"'context.{name}' is not something agents send{hint}", line, column)


def _readable(message: str) -> str:
    """The parser's words for people: its list of every token it would have taken tells them nothing."""
    message = re.sub(r"\s*expecting \{.*\}\s*$", "", message)
    message = message.replace("mismatched input '<EOF>'", "the condition ends too early")
    return message.replace("Syntax error: ", "syntax error: ")


def _locate(source: str, name: str) -> tuple[int, int]:
    m = re.search(rf"(?<![\w.]){re.escape(name)}\b", source)
    if not m:
        return 1, 1
    before = source[: m.start()]
    return before.count("\n") + 1, m.start() - (before.rfind("\n") + 1) + 1
