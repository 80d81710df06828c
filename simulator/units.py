"""Quantities with units: "3.35 TB/s" -> 3.35e12 (SI float), and back for display.

Every unit string in the project is parsed here and nowhere else. Values inside hwsim are
SI floats: seconds, bytes, bytes/second, hertz, watts, joules, FLOP, dollars.

Examples
--------
>>> parse_quantity("3.35 TB/s", "bandwidth")
3350000000000.0
>>> parse_quantity("50 MiB", "bytes")
52428800.0
>>> parse_quantity("1600 Gb/s", "bandwidth")
200000000000.0
>>> format_quantity(1.42e-3, "s")
'1.42 ms'

Bad input is a :class:`UnitError`, never a wrong number: text over :data:`MAX_TEXT` characters,
NaN or infinity, a negative value, a comma that is not a thousands separator (``"3,35 TB/s"``)
and a magnitude outside the sane range of its kind (:data:`LIMITS`, e.g. ``"1e300 B/s"``) are
all refused. Parsing takes time linear in the length of the text.
"""

from __future__ import annotations

import math
import re
import reprlib

__all__ = ["KINDS", "LIMITS", "MAX_TEXT", "UnitError", "parse_quantity", "format_quantity"]


class UnitError(ValueError):
    """A quantity string could not be parsed as the expected kind."""


_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SMALL = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}

# kind -> (example for messages, {unit suffix -> factor to SI}) built below
KINDS: dict[str, str] = {
    "bytes": 'a size like "50 MiB" or "80 GB"',
    "bandwidth": 'a bandwidth like "3.35 TB/s" or "1600 Gb/s"',
    "frequency": 'a frequency like "1.98 GHz"',
    "time": 'a time like "5 us" or "2 ns"',
    "power": 'a power like "700 W"',
    "energy": 'an energy like "1.2 pJ"',
    "energy_per_byte": 'an energy per byte like "31 pJ/B" or "4 pJ/bit"',
    "rate": 'a rate like "989 TFLOP/s"',
    "money": 'an amount like "$25000" or "25000 USD"',
    "money_rate": 'a price per hour like "$3.22/h"',
    "length": 'a process node like "4 nm"',
    "number": "a plain number",
}


def _table(kind: str) -> dict[str, float]:
    t: dict[str, float] = {}
    if kind == "bytes":
        for p, f in _DECIMAL.items():
            t[f"{p}B"] = f
        for p, f in _BINARY.items():
            t[f"{p}B"] = f
        for p, f in _DECIMAL.items():
            t[f"{p}b"] = f / 8.0
            t[f"{p}bit"] = f / 8.0
    elif kind == "bandwidth":
        for p, f in _DECIMAL.items():
            t[f"{p}B/s"] = f
            t[f"{p}b/s"] = f / 8.0
            t[f"{p}bps"] = f / 8.0
        for p, f in _BINARY.items():
            t[f"{p}B/s"] = f
    elif kind == "frequency":
        for p, f in _DECIMAL.items():
            t[f"{p}Hz"] = f
    elif kind == "time":
        for p, f in _SMALL.items():
            t[f"{p}s"] = f
        t.update({"us": 1e-6, "min": 60.0, "h": 3600.0, "hour": 3600.0, "year": 365.0 * 86400})
        t["years"] = t["year"]
    elif kind == "power":
        for p, f in {**_SMALL, **_DECIMAL}.items():
            t[f"{p}W"] = f
    elif kind == "energy":
        for p, f in {**_SMALL, **_DECIMAL}.items():
            t[f"{p}J"] = f
        t["kWh"] = 3.6e6
    elif kind == "energy_per_byte":
        for p, f in {**_SMALL, **_DECIMAL}.items():
            t[f"{p}J/B"] = f
            t[f"{p}J/byte"] = f
            t[f"{p}J/bit"] = f * 8.0
            t[f"{p}J/b"] = f * 8.0
    elif kind == "rate":
        for p, f in _DECIMAL.items():
            for u in ("FLOP/s", "FLOPS", "OP/s", "OPS", "F"):
                t[f"{p}{u}"] = f
    elif kind == "money":
        t.update({"$": 1.0, "USD": 1.0, "usd": 1.0})
    elif kind == "money_rate":
        t.update({"$/h": 1.0 / 3600, "USD/h": 1.0 / 3600, "$/hour": 1.0 / 3600, "$/s": 1.0})
    elif kind == "length":
        t.update({"nm": 1e-9, "um": 1e-6, "mm": 1e-3, "m": 1.0})
    elif kind == "number":
        t[""] = 1.0
    else:  # pragma: no cover - programming error
        raise KeyError(kind)
    return t


_TABLES = {k: _table(k) for k in KINDS}

#: Longest quantity text accepted; longer text is refused before it is parsed.
MAX_TEXT = 200

#: kind -> (smallest non-zero value, largest value, the range in words), in SI units. A parsed
#: value outside the range is a UnitError (zero passes: whether zero makes sense is the caller's
#: call). The bounds are sane physical limits, orders of magnitude beyond any real part (so a
#: typo like "1e300 B/s" or "1e-30 GHz" is caught), and keep every product of spec numbers
#: (peak FLOP/s = units x FLOP/cycle x clock, time = bytes / bandwidth) finite.
LIMITS: dict[str, tuple[float, float, str]] = {
    "bytes": (0.125, 1e18, "1 bit and 1 EB"),
    "bandwidth": (0.125, 1e18, "1 bit/s and 1 EB/s"),
    "frequency": (1.0, 1e12, "1 Hz and 1 THz"),
    "time": (1e-18, 1e10, "1 as and 1e10 s (317 years)"),
    "power": (1e-12, 1e8, "1 pW and 100 MW"),
    "energy": (1e-21, 1e12, "1 zJ and 1 TJ"),
    "energy_per_byte": (1e-21, 1.0, "1 zJ/B and 1 J/B"),
    "rate": (1.0, 1e21, "1 FLOP/s and 1 ZFLOP/s"),
    "money": (1e-6, 1e10, "$0.000001 and $10,000,000,000"),
    "money_rate": (1e-6 / 3600, 1e6 / 3600, "$0.000001/h and $1,000,000/h"),
    "length": (1e-11, 1e-3, "0.01 nm and 1 mm"),
    "number": (0.0, 1e15, "0 and 1e15"),
}

# A number: optional sign, then an integer part with optional "," thousands groups (exactly
# three digits each) or "_" separators, an optional fraction and an optional exponent. Every
# part is unambiguous, so a match (anchored at the start, never at $) is linear in the text.
_NUM = re.compile(r"[-+]?(?:(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9,])|[0-9]+(?:_[0-9]+)*)"
                  r"(?:\.(?:[0-9]+(?:_[0-9]+)*)?)?|\.[0-9]+(?:_[0-9]+)*)(?:[eE][-+]?[0-9]+)?")

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _show(value: object) -> str:
    """``repr(value)``, shortened for messages (a 100k-character string prints as 60)."""
    return _REPR.repr(value)


def _noun(kind: str) -> str:
    """ "a bandwidth", "an energy", ... (KINDS without its example)."""
    return KINDS[kind].split(" like")[0]


def _in_range(x: float, kind: str, value: object) -> float:
    if isinstance(value, float) and not math.isfinite(value):  # YAML .nan / .inf
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)} (not a finite number)")
    if x < 0:
        raise UnitError(f"expected a non-negative {_noun(kind).split(' ', 1)[1]}, "
                        f"got {_show(value)}")
    lo, hi, words = LIMITS[kind]
    if x != 0 and not lo <= x <= hi:
        raise UnitError(f"expected {_noun(kind)} between {words}, got {_show(value)}")
    return x


def parse_quantity(value: object, kind: str) -> float:
    """Parse ``value`` (a string with a unit, or a bare number already in SI) as ``kind``.

    Raises
    ------
    UnitError
        If the text is not a number followed by a unit of that kind (the message says which
        kind was expected, with an example), is longer than :data:`MAX_TEXT`, or the value is
        not finite, negative, or outside the range :data:`LIMITS` gives for the kind.

    Examples
    --------
    >>> parse_quantity("25,000 USD", "money")
    25000.0
    >>> parse_quantity("3,35 TB/s", "bandwidth")
    Traceback (most recent call last):
    ...
    simulator.units.UnitError: expected a bandwidth like "3.35 TB/s" or "1600 Gb/s", got '3,35 TB/s' (a comma only separates thousands, as in 25,000; write decimals with a point)
    """
    if kind not in _TABLES:
        raise KeyError(f"unknown quantity kind {kind!r}")
    if isinstance(value, bool):
        raise UnitError(f"expected {KINDS[kind]}, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            x = float(value)
        except OverflowError:  # an int beyond the float range
            x = math.inf
        return _in_range(x, kind, value)
    if not isinstance(value, str):
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)}")
    if len(value) > MAX_TEXT:
        raise UnitError(f"expected {KINDS[kind]}, got a text of {len(value)} characters "
                        f"(at most {MAX_TEXT}): {_show(value)}")
    text = value.strip()
    dollar = text.startswith("$")
    if dollar:
        text = text[1:].lstrip()
    m = _NUM.match(text)
    if not m:
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)}")
    x = float(m.group().replace(",", "").replace("_", ""))
    unit = text[m.end():].strip()
    table = _TABLES[kind]
    if kind in ("money", "money_rate") and dollar:
        unit = "$" + unit if unit.startswith("/") else (unit or "$")
    elif dollar:
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)} (a $ amount)")
    if unit == "" and kind != "number":
        # A bare number in a string is taken as SI, like a bare YAML number.
        return _in_range(x, kind, value)
    if unit.startswith(","):
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)} (a comma only separates "
                        f"thousands, as in 25,000; write decimals with a point)")
    if unit not in table:
        raise UnitError(f"expected {KINDS[kind]}, got {_show(value)} (unknown unit {_show(unit)})")
    return _in_range(x * table[unit], kind, value)


_DISPLAY_PREFIX = [
    (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""),
    (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"),
]


def format_quantity(value: float, unit: str, digits: int = 3) -> str:
    """Format an SI value with an engineering prefix: ``format_quantity(3.35e12, "B/s")``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    if unit == "$":
        return f"${value:,.4g}" if abs(value) < 1000 else f"${value:,.0f}"
    mag = abs(value)
    for scale, prefix in _DISPLAY_PREFIX:
        if mag >= scale * 0.9995:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    scale, prefix = _DISPLAY_PREFIX[-1]
    return f"{value / scale:.{digits}g} {prefix}{unit}"
