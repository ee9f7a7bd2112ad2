"""TOML text for the values a run configuration holds (strings, numbers, booleans, pairs)."""

import json
import math
import numbers


def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        text = repr(f)  # the shortest text that reads back as the same double, as the engine prints them
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"{v!r} ({type(v).__name__}) has no TOML form")


def table(lines, header, items):
    """Appends `[header]` and its `key = value` lines (items: (key, value) pairs) to `lines`."""
    lines.append(header)
    for k, v in items:
        lines.append(f"{k} = {value(v)}")
