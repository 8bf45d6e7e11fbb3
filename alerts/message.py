"""What an alert says: a subject a person reads at a glance, a short body, and a JSON form.

    IBM golden cross: SMA 20 above SMA 50 at 10:31 New York, close 171.40

SNS subjects must be ASCII and under 100 characters; both hold here for any valid symbol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SUBJECT_LIMIT = 99


@dataclass(frozen=True, slots=True)
class Alert:
    symbol: str
    ts: str
    ts_ms: int
    type: str
    direction: str
    value: float | None
    detail: str
    close: float | None
    rule: str
    timeframe: str = "1m"

    @property
    def signal(self) -> str:
        """Tells a bar's signals apart, as the ``signal`` field of ``stock-signals`` does: the type of
        a 1-minute signal, then the pattern's name or the candle length."""
        if self.type == "candle_pattern":
            return f"{self.type}:{self.detail}"
        return self.type if self.timeframe == "1m" else f"{self.type}:{self.timeframe}"

    @property
    def id(self) -> str:
        """The signal id, as in the ``stock-signals`` index: one alert per id."""
        return f"{self.symbol}|{self.ts}|{self.signal}"

    def headline(self) -> str:
        """What happened, without the time: "golden cross: SMA 20 above SMA 50"; a signal on 5- or
        15-minute candles starts with the length."""
        what = self._what()
        return what if self.timeframe == "1m" else f"{self.timeframe} candles: {what}"

    def _what(self) -> str:
        up = self.direction == "up"
        value = self.value
        match self.type:
            case "sma_cross":
                return "golden cross: SMA 20 above SMA 50" if up else "death cross: SMA 20 below SMA 50"
            case "macd_cross":
                return f"MACD {'bullish' if up else 'bearish'} cross: MACD {'above' if up else 'below'} its signal line"
            case "rsi_zone":
                zone = "overbought" if up else "oversold"
                return f"RSI {zone}: RSI 14 {'rose' if up else 'fell'} to {_fixed(value, 1)}"
            case "bb_breakout":
                return f"Bollinger breakout: close {'above the upper' if up else 'below the lower'} band"
            case "volume_spike":
                return f"volume spike: {_fixed(value, 1)} standard deviations above the last 20 bars"
            case "price_anomaly":
                return f"price {'jump' if up else 'drop'}: a {_fixed(value, 1)} sigma move"
            case "candle_pattern":
                name = self.detail.removeprefix("CDL").lower()
                return f"{'bullish' if up else 'bearish'} candlestick pattern {name} ({self.detail})"
            case "trend_change":
                before = self.detail.split("->")[0] if "->" in self.detail else "?"
                return f"trend turned {self.direction} (was {before})"
        return f"{self.type.replace('_', ' ')} {self.direction}"

    def local_time(self) -> datetime:
        return datetime.fromtimestamp(self.ts_ms / 1000, NEW_YORK)

    def subject(self) -> str:
        text = f"{self.symbol} {self.headline()} at {self.local_time():%H:%M} New York"
        if self.close is not None:
            text += f", close {self.close:.2f}"
        text = text.encode("ascii", "replace").decode()
        return text if len(text) <= SUBJECT_LIMIT else text[:SUBJECT_LIMIT - 3] + "..."

    def body(self) -> str:
        local = self.local_time()
        utc = datetime.fromtimestamp(self.ts_ms / 1000, timezone.utc)
        lines = [
            self.subject(),
            "",
            f"Bar:       {local:%A %Y-%m-%d %H:%M} New York ({utc:%H:%M} UTC)",
            f"Signal:    {self.type} {self.direction} ({self.detail or 'no detail'}), value {_fixed(self.value, 4)}",
            f"Close:     {_fixed(self.close, 2)}",
            f"Rule:      {self.rule}",
            f"Signal id: {self.id}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The JSON form (webhook, HTTPS/SQS/Lambda subscribers, the dashboard)."""
        return {"id": self.id, **asdict(self), "subject": self.subject()}


def _fixed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
