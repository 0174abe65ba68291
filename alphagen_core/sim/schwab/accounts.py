"""The stand-in's one account: cash, positions and balances, moved by fills.

    GET    /trader/v1/accounts/accountNumbers          [{accountNumber, hashValue}]
    GET    /trader/v1/accounts/{hash}[?fields=positions]   currentBalances: cashBalance,
           liquidationValue, equity, maintenanceRequirement (a short option: 20% of its
           strike per share), availableFunds = buyingPower = liquidation - requirement
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alphagen_core.domain.symbols import parse_schwab
from alphagen_core.sim.schwab.quote_book import QuoteBook, book_key
from alphagen_core.sim.schwab.wire import describe

if TYPE_CHECKING:
    from alphagen_core.sim.schwab.orders import StandInOrder


@dataclass
class Position:
    symbol: str
    asset_type: str
    long_qty: int = 0
    short_qty: int = 0
    avg_long: float = 0.0
    avg_short: float = 0.0


class Account:
    def __init__(
        self, number: str, starting_cash: float, quote_book: QuoteBook, lock: threading.RLock
    ) -> None:
        self.number = number
        self.cash = float(starting_cash)
        self.quote_book = quote_book
        self._lock = lock
        self._positions: dict[str, Position] = {}

    def positions(self) -> dict[str, int]:
        """Net signed quantity per symbol (Schwab form for options)."""
        with self._lock:
            return {
                s: p.long_qty - p.short_qty
                for s, p in self._positions.items()
                if p.long_qty or p.short_qty
            }

    def set_position(self, symbol: str, quantity: int, avg_price: float) -> None:
        key = book_key(symbol)
        with self._lock:
            asset = "OPTION" if len(key) == 21 else "EQUITY"
            pos = Position(key, asset)
            if quantity >= 0:
                pos.long_qty, pos.avg_long = quantity, avg_price
            else:
                pos.short_qty, pos.avg_short = -quantity, avg_price
            self._positions[key] = pos

    def apply_fill(self, order: StandInOrder, price: float, quantity: int) -> None:
        """Move the position and the cash by one fill. Called with the lock held."""
        pos = self._positions.get(order.symbol)
        if pos is None:
            pos = self._positions[order.symbol] = Position(order.symbol, order.asset_type)
        multiplier = 100 if order.asset_type == "OPTION" else 1
        instruction = order.instruction
        if instruction in ("SELL_TO_OPEN",) or (instruction == "SELL" and pos.long_qty == 0):
            total = pos.short_qty + quantity
            pos.avg_short = (pos.avg_short * pos.short_qty + price * quantity) / total
            pos.short_qty = total
        elif instruction in ("BUY_TO_OPEN",) or (instruction == "BUY" and pos.short_qty == 0):
            total = pos.long_qty + quantity
            pos.avg_long = (pos.avg_long * pos.long_qty + price * quantity) / total
            pos.long_qty = total
        elif instruction.startswith("BUY"):  # BUY_TO_CLOSE
            pos.short_qty = max(pos.short_qty - quantity, 0)
            if pos.short_qty == 0:
                pos.avg_short = 0.0
        else:  # SELL_TO_CLOSE
            pos.long_qty = max(pos.long_qty - quantity, 0)
            if pos.long_qty == 0:
                pos.avg_long = 0.0
        sign = 1 if instruction.startswith("SELL") else -1
        self.cash += sign * price * quantity * multiplier

    def account_json(self, with_positions: bool) -> dict[str, Any]:
        with self._lock:
            positions = [
                self._position_json(p)
                for p in self._positions.values()
                if p.long_qty or p.short_qty
            ]
            cash = self.cash
            requirement = sum(self._maintenance(p) for p in self._positions.values())
        market = sum(p["marketValue"] for p in positions)
        liquidation = cash + market
        available = round(max(liquidation - requirement, 0.0), 2)
        account: dict[str, Any] = {
            "type": "MARGIN",
            "accountNumber": self.number,
            "roundTrips": 0,
            "isDayTrader": False,
            "isClosingOnlyRestricted": False,
            "pfcbFlag": False,
            "initialBalances": {"cashBalance": cash, "liquidationValue": cash + market},
            "currentBalances": {
                "cashBalance": cash, "liquidationValue": liquidation, "equity": liquidation,
                "maintenanceRequirement": round(requirement, 2), "availableFunds": available,
                "buyingPower": available,
            },
            "projectedBalances": {"cashBalance": cash},
        }
        if with_positions:
            account["positions"] = positions
        return {
            "securitiesAccount": account,
            "aggregatedBalance": {
                "currentLiquidationValue": cash + market,
                "liquidationValue": cash + market,
            },
        }

    @staticmethod
    def _maintenance(p: Position) -> float:
        """A short option's requirement, simplified to 20% of the strike per share: the
        stand-in knows no underlying price (the real rule is `risk.naked_margin_per_contract`)."""
        if p.asset_type != "OPTION" or not p.short_qty:
            return 0.0
        return p.short_qty * 100 * 0.20 * parse_schwab(p.symbol).strike

    def _position_json(self, p: Position) -> dict[str, Any]:
        quote = self.quote_book.get(p.symbol)
        multiplier = 100 if p.asset_type == "OPTION" else 1
        net = p.long_qty - p.short_qty
        if quote is not None:
            mark = quote.mark
        else:
            mark = p.avg_short if net < 0 else p.avg_long
        instrument: dict[str, Any] = {"assetType": p.asset_type, "symbol": p.symbol}
        if p.asset_type == "OPTION":
            contract = parse_schwab(p.symbol)
            instrument.update(
                {
                    "cusip": "0" + p.symbol.replace(" ", "")[:8],
                    "description": describe(contract),
                    "type": "VANILLA",
                    "putCall": "CALL" if contract.right.value == "C" else "PUT",
                    "underlyingSymbol": contract.root,
                }
            )
        average = p.avg_short if net < 0 else p.avg_long
        return {
            "shortQuantity": float(p.short_qty),
            "averagePrice": round(average, 4),
            "longQuantity": float(p.long_qty),
            "settledLongQuantity": 0.0,
            "settledShortQuantity": 0.0,
            "averageLongPrice": round(p.avg_long, 4),
            "averageShortPrice": round(p.avg_short, 4),
            "instrument": instrument,
            "marketValue": round(net * mark * multiplier, 2),
            "currentDayProfitLoss": 0.0,
        }
