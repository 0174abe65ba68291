"""Polygon (Massive) adapters: flat files, REST and websocket market data."""
