"""Errors a user can cause. Each message says what was wrong and how to fix it."""


class DPTuneError(Exception):
    """Base class of every error dptune reports to a user (CLI prints, UI shows st.error)."""


class ConfigError(DPTuneError, ValueError):
    """A specification or YAML value is invalid (names the key and the allowed range)."""


class DataError(DPTuneError, ValueError):
    """A dataset file or column is unusable."""


class ModelError(DPTuneError, ValueError):
    """A model cannot be built or cannot be trained privately."""


class PrivacyError(DPTuneError, ValueError):
    """A privacy budget is impossible or an accounting input is out of range."""


class TrainingError(DPTuneError, RuntimeError):
    """A training run failed (NaN loss, out of memory, ...)."""
