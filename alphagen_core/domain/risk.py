"""Sizing, brackets and fees."""

from __future__ import annotations

import math
from dataclasses import dataclass

from alphagen_core.domain.models import CONTRACT_MULTIPLIER, Right


@dataclass(frozen=True, slots=True)
class RiskConfig:
    stop_loss_multiple: float = 2.0
    take_profit_multiple: float = 0.5
    max_position_size: int = 25
    trading_capital: float = 5_000_000.0
    fee_per_contract: float = 0.65
    fee_regulatory_per_contract: float = 0.0
    max_daily_loss: float = 100_000.0  # 0 = off
    max_entries_per_day: int = 40  # 0 = off
    order_max_deviation: float = 0.25


def naked_margin_per_contract(right: Right, strike: float, underlying: float, premium: float) -> float:
    """Margin of one uncovered short option, by the CBOE/FINRA rule for equity options:
    premium + max(20% of the underlying - the out-of-the-money amount, 10% of the strike
    for puts / of the underlying for calls), times the multiplier."""
    if right is Right.PUT:
        otm = max(underlying - strike, 0.0)
        floor = 0.10 * strike
    else:
        otm = max(strike - underlying, 0.0)
        floor = 0.10 * underlying
    return (premium + max(0.20 * underlying - otm, floor)) * CONTRACT_MULTIPLIER


def position_size(cfg: RiskConfig, margin_per_contract: float, capital_available: float) -> int:
    """RISK_MAX_POSITION_SIZE, reduced so that the margin stays within the capital."""
    if margin_per_contract <= 0:
        return cfg.max_position_size
    affordable = math.floor(max(capital_available, 0.0) / margin_per_contract)
    return max(0, min(cfg.max_position_size, affordable))


def brackets(cfg: RiskConfig, credit: float) -> tuple[float, float]:
    """(stop_loss, take_profit) ask levels for a short sold at `credit`."""
    return round(credit * cfg.stop_loss_multiple, 4), round(credit * cfg.take_profit_multiple, 4)


def loss_limit_reached(cfg: RiskConfig, realized: float, unrealized: float) -> bool:
    """the session's realized P/L (net of fees) plus the open position's unrealized
    P/L has reached minus RISK_MAX_DAILY_LOSS."""
    return cfg.max_daily_loss > 0 and realized + unrealized <= -cfg.max_daily_loss


def price_insane(cfg: RiskConfig, limit: float, bid: float, ask: float) -> str | None:
    """price sanity: why an order at `limit` must not go out on this quote, or None."""
    mid = (bid + ask) / 2
    if ask <= 0 or bid > ask:
        return f"quote {bid:.2f}/{ask:.2f} is empty or crossed"
    deviation = abs(limit - mid) / mid
    if deviation > cfg.order_max_deviation:
        return f"limit {limit:.2f} is {deviation:.0%} from the mid {mid:.3f} (ORDER_MAX_DEVIATION {cfg.order_max_deviation:g})"
    return None


def fees(cfg: RiskConfig, qty: int) -> float:
    return round(qty * (cfg.fee_per_contract + cfg.fee_regulatory_per_contract), 2)


def round_trip_pnl(credit: float, debit: float, qty: int) -> float:
    """Gross P/L of closing a short: (credit - debit) * 100 * qty, in dollars."""
    return round((credit - debit) * CONTRACT_MULTIPLIER * qty, 2)
