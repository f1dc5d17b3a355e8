"""mlcache: audit and clean Core ML caches inside iOS and macOS app containers."""

__version__ = "0.1.0"
