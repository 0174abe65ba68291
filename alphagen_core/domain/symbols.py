"""Option symbols in Polygon form (``O:QQQ240212C00430000``) and Schwab form
(``QQQ   240212C00430000``), and conversions between them and ``OptionContract``.

Both forms follow the OCC layout: root, expiry YYMMDD, C or P, strike in thousandths of a
dollar as 8 digits. Polygon prefixes ``O:`` and writes the root unpadded; Schwab pads the
root with spaces to 6 characters, so a Schwab symbol is always 21 characters long.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from functools import lru_cache

from alphagen_core.domain.models import OptionContract, Right

POLYGON_PREFIX = "O:"
ROOT_WIDTH = 6
SCHWAB_LENGTH = ROOT_WIDTH + 15
MAX_STRIKE_MILLIS = 99_999_999

_ROOT = re.compile(r"[A-Z0-9]{1,6}")
_TAIL = r"([0-9]{6})([CP])([0-9]{8})"
_POLYGON = re.compile(rf"O:([A-Z0-9]{{1,6}}){_TAIL}")
_POLYGON_LOOSE = re.compile(
    r"(?P<root>.*?)(?P<expiry>[0-9]{6})(?P<right>[^0-9])(?P<strike>.*)", re.DOTALL
)
# The lookahead pins the total length, so root plus padding is exactly the first 6 chars.
_SCHWAB = re.compile(rf"(?=.{{{SCHWAB_LENGTH}}}\Z)([A-Z0-9]{{1,6}}) *{_TAIL}", re.DOTALL)


class OptionSymbolError(ValueError):
    """`symbol` is the offending text, or the contract that cannot be written as a symbol."""

    def __init__(self, symbol: object, problem: str) -> None:
        if isinstance(symbol, str):
            message = f"bad option symbol {symbol!r}: {problem}"
        else:
            message = f"cannot write {symbol!r} as an option symbol: {problem}"
        super().__init__(message)
        self.symbol = symbol
        self.problem = problem


_LAYOUT = "root of 1-6 uppercase letters/digits, YYMMDD, C or P, 8-digit strike x 1000"


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _tail_problem(tail: str) -> str:
    """What is wrong with the 15-character 'YYMMDD C/P strike' tail of a symbol."""
    if not _is_digits(tail[:6]):
        return f"expiry {tail[:6]!r} is not 6 digits (YYMMDD)"
    if tail[6] not in "CP":
        return f"right {tail[6]!r} is not C or P"
    if not _is_digits(tail[7:]):
        return f"strike {tail[7:]!r} is not 8 digits"
    return f"does not match the layout ({_LAYOUT})"


def _polygon_problem(sym: str) -> str:
    if not sym.startswith(POLYGON_PREFIX):
        return f"missing the {POLYGON_PREFIX!r} prefix"
    body = sym[len(POLYGON_PREFIX) :]
    if body != body.upper():
        return "must be uppercase"
    # The root has no fixed width, so find the fields around the first 6 digits followed by
    # a non-digit (the expiry and the right) before blaming the length.
    loose = _POLYGON_LOOSE.fullmatch(body)
    if loose is not None:
        root, right, strike = loose.group("root", "right", "strike")
        if not _ROOT.fullmatch(root):
            return f"root {root!r} is not 1-6 uppercase letters/digits"
        if right not in "CP":
            return f"right {right!r} is not C or P"
        if not (len(strike) == 8 and _is_digits(strike)):
            return f"strike {strike!r} is not 8 digits"
    if not 16 <= len(body) <= 21:
        return f"wrong length: {len(body)} characters after 'O:', expected 16-21 ({_LAYOUT})"
    return _tail_problem(body[-15:])


def _schwab_problem(sym: str) -> str:
    if sym.startswith(POLYGON_PREFIX):
        return "has the Polygon 'O:' prefix; a Schwab symbol has none"
    if sym != sym.upper():
        return "must be uppercase"
    if len(sym) != SCHWAB_LENGTH:
        return (
            f"wrong length: {len(sym)} characters, expected {SCHWAB_LENGTH} "
            "(root left-justified and space-padded to 6, YYMMDD, C or P, 8-digit strike)"
        )
    if not _ROOT.fullmatch(sym[:ROOT_WIDTH].rstrip(" ")):
        return f"root field {sym[:ROOT_WIDTH]!r} is not 1-6 letters/digits padded with spaces"
    return _tail_problem(sym[ROOT_WIDTH:])


def _contract(sym: str, root: str, yymmdd: str, right: str, strike: str) -> OptionContract:
    try:
        # Two-digit years are 20YY: listed options never expire more than a few years out.
        expiry = dt.date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        raise OptionSymbolError(sym, f"expiry {yymmdd!r} is not a valid YYMMDD date") from None
    millis = int(strike)
    if millis == 0:
        raise OptionSymbolError(sym, "strike is zero")
    return OptionContract(root=root, expiry=expiry, right=Right(right), strike=millis / 1000)


@lru_cache(maxsize=16384)
def parse_polygon(sym: str) -> OptionContract:
    """``O:QQQ240212C00430000`` -> OptionContract(QQQ, 2024-02-12, C, 430.0)."""
    if not isinstance(sym, str):
        raise OptionSymbolError(sym, f"expected a string, got {type(sym).__name__}")
    match = _POLYGON.fullmatch(sym)
    if match is None:
        raise OptionSymbolError(sym, _polygon_problem(sym))
    return _contract(sym, *match.groups())


@lru_cache(maxsize=16384)
def parse_schwab(sym: str) -> OptionContract:
    """``QQQ   240212C00430000`` -> OptionContract(QQQ, 2024-02-12, C, 430.0)."""
    if not isinstance(sym, str):
        raise OptionSymbolError(sym, f"expected a string, got {type(sym).__name__}")
    match = _SCHWAB.fullmatch(sym)
    if match is None:
        raise OptionSymbolError(sym, _schwab_problem(sym))
    return _contract(sym, *match.groups())


def _occ_fields(c: OptionContract) -> tuple[str, str]:
    """The validated root and the shared 'YYMMDD C/P strike' tail of a contract."""
    if not isinstance(c.root, str) or not _ROOT.fullmatch(c.root):
        raise OptionSymbolError(c, f"root {c.root!r} is not 1-6 uppercase letters/digits")
    if not 2000 <= c.expiry.year <= 2099:
        raise OptionSymbolError(c, f"expiry {c.expiry} is outside 2000-2099 (YY form)")
    try:
        right = Right(c.right)
    except ValueError:
        raise OptionSymbolError(c, f"right {c.right!r} is not C or P") from None
    scaled = c.strike * 1000 if math.isfinite(c.strike) else -1.0
    millis = round(scaled)
    if not 0 < millis <= MAX_STRIKE_MILLIS or abs(scaled - millis) > 1e-6:
        raise OptionSymbolError(
            c, f"strike {c.strike!r} is not a positive multiple of 0.001 below 100000"
        )
    return c.root, f"{c.expiry:%y%m%d}{right.value}{millis:08d}"


def to_polygon(c: OptionContract) -> str:
    root, tail = _occ_fields(c)
    return f"{POLYGON_PREFIX}{root}{tail}"


def to_schwab(c: OptionContract) -> str:
    root, tail = _occ_fields(c)
    return f"{root:<{ROOT_WIDTH}}{tail}"


def polygon_to_schwab(sym: str) -> str:
    return to_schwab(parse_polygon(sym))


def schwab_to_polygon(sym: str) -> str:
    return to_polygon(parse_schwab(sym))
