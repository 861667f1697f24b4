"""vablib: train clean classifiers on backdoor-poisoned data with V&B (ICCV 2023)."""
__version__ = "0.1.0"
