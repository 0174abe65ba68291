from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagen_core.domain.models import OptionContract, Right
from alphagen_core.domain.symbols import (
    OptionSymbolError,
    parse_polygon,
    parse_schwab,
    polygon_to_schwab,
    schwab_to_polygon,
    to_polygon,
    to_schwab,
)

pytestmark = pytest.mark.unit

QQQ_CALL = OptionContract("QQQ", dt.date(2024, 2, 12), Right.CALL, 430.0)


# ---- examples ------------------------------------------------------------------------------


def test_facts_example_polygon() -> None:
    assert parse_polygon("O:QQQ240212C00430000") == QQQ_CALL
    assert to_polygon(QQQ_CALL) == "O:QQQ240212C00430000"


def test_facts_example_schwab() -> None:
    assert parse_schwab("QQQ   240212C00430000") == QQQ_CALL
    assert to_schwab(QQQ_CALL) == "QQQ   240212C00430000"


def test_facts_example_conversions() -> None:
    assert polygon_to_schwab("O:QQQ240212C00430000") == "QQQ   240212C00430000"
    assert schwab_to_polygon("QQQ   240212C00430000") == "O:QQQ240212C00430000"


def test_put_with_fractional_strike() -> None:
    put = OptionContract("QQQ", dt.date(2025, 12, 19), Right.PUT, 430.5)
    assert to_polygon(put) == "O:QQQ251219P00430500"
    assert to_schwab(put) == "QQQ   251219P00430500"
    parsed = parse_polygon("O:QQQ251219P00430500")
    assert parsed == put
    assert parsed.right is Right.PUT
    assert parse_schwab("QQQ   251219P00430500").strike == 430.5


@pytest.mark.parametrize(
    ("polygon", "schwab", "contract"),
    [
        ("O:SPY240621P00000500", "SPY   240621P00000500", ("SPY", 2024, 6, 21, "P", 0.5)),
        ("O:A240621C00001000", "A     240621C00001000", ("A", 2024, 6, 21, "C", 1.0)),
        ("O:SPXW240621C05500000", "SPXW  240621C05500000", ("SPXW", 2024, 6, 21, "C", 5500.0)),
        ("O:QQQ1240621C00430125", "QQQ1  240621C00430125", ("QQQ1", 2024, 6, 21, "C", 430.125)),
        (
            "O:ABCDEF991231P99999999",
            "ABCDEF991231P99999999",
            ("ABCDEF", 2099, 12, 31, "P", 99999.999),
        ),
        ("O:QQQ240229C00430000", "QQQ   240229C00430000", ("QQQ", 2024, 2, 29, "C", 430.0)),
    ],
)
def test_examples_both_forms(
    polygon: str, schwab: str, contract: tuple[str, int, int, int, str, float]
) -> None:
    root, y, m, d, right, strike = contract
    expected = OptionContract(root, dt.date(y, m, d), Right(right), strike)
    assert parse_polygon(polygon) == expected
    assert parse_schwab(schwab) == expected
    assert to_polygon(expected) == polygon
    assert to_schwab(expected) == schwab
    assert len(schwab) == 21
    assert polygon_to_schwab(polygon) == schwab
    assert schwab_to_polygon(schwab) == polygon


def test_right_accepts_a_plain_letter() -> None:
    contract = OptionContract("QQQ", dt.date(2024, 2, 12), "P", 430.0)  # type: ignore[arg-type]
    assert to_polygon(contract) == "O:QQQ240212P00430000"


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "problem"),
    [
        ("QQQ240212C00430000", "missing the 'O:' prefix"),
        ("o:QQQ240212C00430000", "missing the 'O:' prefix"),
        ("O:qqq240212C00430000", "uppercase"),
        ("O:QQQ240212c00430000", "uppercase"),
        ("O:QQQ241302C00430000", "expiry '241302' is not a valid YYMMDD date"),
        ("O:QQQ240230C00430000", "expiry '240230' is not a valid YYMMDD date"),
        ("O:QQQ230229C00430000", "expiry '230229' is not a valid YYMMDD date"),  # not a leap year
        ("O:QQQ240212X00430000", "right 'X' is not C or P"),
        ("O:QQQ240212C0043000", "strike '0043000' is not 8 digits"),
        ("O:QQQ240212C004300000", "strike '004300000' is not 8 digits"),
        ("O:240212C00430000", "root '' is not 1-6"),
        ("O:", "wrong length"),
        ("O:QQQ", "wrong length: 3 characters"),
        ("", "missing the 'O:' prefix"),
        ("O:QQQQQQQ240212C00430000", "root 'QQQQQQQ' is not 1-6"),
        ("O:QQQ240212-00430000", "right '-' is not C or P"),
        ("O:Q-Q240212C00430000", "root 'Q-Q'"),
        ("O:QQQ24021AC00430000", "expiry '24021A' is not 6 digits"),
        ("O:QQQ240212C0043000A", "strike '0043000A' is not 8 digits"),
        ("O:QQQ240212C00000000", "strike is zero"),
        ("O:QQQ240212C00430000 ", "is not 8 digits"),
        ("O:QQQ\u0662\u0664\u0660\u0662\u0661\u0662C00430000", "is not 6 digits"),  # Arabic digits
        ("QQQ   240212C00430000", "missing the 'O:' prefix"),  # a Schwab symbol
    ],
)
def test_bad_polygon_symbols(symbol: str, problem: str) -> None:
    with pytest.raises(OptionSymbolError) as exc:
        parse_polygon(symbol)
    message = str(exc.value)
    assert repr(symbol) in message
    assert problem in message
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    ("symbol", "problem"),
    [
        ("QQQ 240212C00430000", "wrong length: 19 characters, expected 21"),
        ("QQQ    240212C00430000", "wrong length: 22 characters, expected 21"),
        ("QQQ240212C00430000", "wrong length"),
        ("   QQQ240212C00430000", "root field '   QQQ'"),  # right-justified root
        ("Q QQ  240212C00430000", "root field 'Q QQ  '"),
        ("      240212C00430000", "root field"),
        ("qqq   240212C00430000", "uppercase"),
        ("QQQ   241302C00430000", "expiry '241302' is not a valid YYMMDD date"),
        ("QQQ   240212Z00430000", "right 'Z' is not C or P"),
        ("QQQ   240212C0043000X", "is not 8 digits"),
        ("O:QQQ240212C00430000", "Polygon 'O:' prefix"),
        ("QQQ   240212C00000000", "strike is zero"),
    ],
)
def test_bad_schwab_symbols(symbol: str, problem: str) -> None:
    with pytest.raises(OptionSymbolError) as exc:
        parse_schwab(symbol)
    message = str(exc.value)
    assert repr(symbol) in message
    assert problem in message


def test_conversions_reject_bad_input() -> None:
    with pytest.raises(OptionSymbolError, match="wrong length"):
        schwab_to_polygon("QQQ 240212C00430000")
    with pytest.raises(OptionSymbolError, match="prefix"):
        polygon_to_schwab("QQQ   240212C00430000")


def test_non_string_input() -> None:
    with pytest.raises(OptionSymbolError, match="expected a string, got int"):
        parse_polygon(240212)  # type: ignore[arg-type]
    with pytest.raises(OptionSymbolError, match="expected a string, got bytes"):
        parse_schwab(b"QQQ   240212C00430000")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("contract", "problem"),
    [
        (OptionContract("qqq", dt.date(2024, 2, 12), Right.CALL, 430.0), "root 'qqq'"),
        (OptionContract("QQQQQQQ", dt.date(2024, 2, 12), Right.CALL, 430.0), "root 'QQQQQQQ'"),
        (OptionContract("", dt.date(2024, 2, 12), Right.CALL, 430.0), "root ''"),
        (OptionContract("QQQ", dt.date(1999, 12, 31), Right.CALL, 430.0), "outside 2000-2099"),
        (OptionContract("QQQ", dt.date(2100, 1, 1), Right.CALL, 430.0), "outside 2000-2099"),
        (
            OptionContract("QQQ", dt.date(2024, 2, 12), "X", 430.0),  # type: ignore[arg-type]
            "right 'X'",
        ),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, 0.0), "strike 0.0"),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, -1.0), "strike -1.0"),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, 430.0001), "strike 430.0001"),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, 100000.0), "strike 100000.0"),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, float("nan")), "strike nan"),
        (OptionContract("QQQ", dt.date(2024, 2, 12), Right.PUT, float("inf")), "strike inf"),
    ],
)
def test_contracts_that_cannot_be_written(contract: OptionContract, problem: str) -> None:
    for write in (to_polygon, to_schwab):
        with pytest.raises(OptionSymbolError, match=re.escape(problem)):
            write(contract)


def test_parse_is_cached() -> None:
    first = parse_polygon("O:QQQ240212C00430000")
    assert parse_polygon("O:QQQ240212C00430000") is first
    assert parse_polygon.cache_info().hits >= 1
    assert parse_schwab("QQQ   240212C00430000") is parse_schwab("QQQ   240212C00430000")


# ---- properties ----------------------------------------------------------------------------

roots = st.from_regex(r"[A-Z0-9]{1,6}", fullmatch=True)
contracts = st.builds(
    OptionContract,
    root=roots,
    expiry=st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
    right=st.sampled_from(list(Right)),
    strike=st.integers(1, 99_999_999).map(lambda millis: millis / 1000),
)


@settings(max_examples=300, database=None)
@given(contracts)
def test_polygon_round_trip(contract: OptionContract) -> None:
    symbol = to_polygon(contract)
    assert re.fullmatch(r"O:[A-Z0-9]{1,6}[0-9]{6}[CP][0-9]{8}", symbol)
    assert parse_polygon(symbol) == contract
    assert to_polygon(parse_polygon(symbol)) == symbol


@settings(max_examples=300, database=None)
@given(contracts)
def test_schwab_round_trip(contract: OptionContract) -> None:
    symbol = to_schwab(contract)
    assert len(symbol) == 21
    assert symbol[:6].rstrip(" ") == contract.root
    assert parse_schwab(symbol) == contract
    assert to_schwab(parse_schwab(symbol)) == symbol


@settings(max_examples=300, database=None)
@given(contracts)
def test_conversions_are_inverse(contract: OptionContract) -> None:
    polygon, schwab = to_polygon(contract), to_schwab(contract)
    assert polygon_to_schwab(polygon) == schwab
    assert schwab_to_polygon(schwab) == polygon
    assert polygon_to_schwab(schwab_to_polygon(schwab)) == schwab
    assert schwab_to_polygon(polygon_to_schwab(polygon)) == polygon
