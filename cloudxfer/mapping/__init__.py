"""Scene-scale class maps: sliding 64 x 64 windows over a co-registered S2/S1 scene pair.

``cloudxfer map --ckpt F2.ckpt --opt S2.tif --sar S1.tif --out map.tif`` reads the scene in
strips of window rows (``reader``), classifies batches of windows with the checkpoint's own
normalisation and an optional fallback for missing or fully clouded optical (``predictor``),
averages overlapping windows' probabilities in a strip-sized buffer and writes finished rows
of a tiled GeoTIFF plus a PNG preview (``writer``). Memory stays O(width x 64 x classes).
Names are imported on first use (``cloudxfer map --help`` imports no torch).
"""

from cloudxfer.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "FALLBACKS": "options",
        "WINDOW": "options",
        "FallbackPolicy": "predictor",
        "MapModel": "predictor",
        "StripAccumulator": "windows",
        "WindowClassifier": "predictor",
        "window_offsets": "windows",
    },
)
