"""FlexFactor merchant API client: models, errors, retries and the shared token."""

from __future__ import annotations

from worker.flexfactor.client import AttemptRecord, FlexFactorClient
from worker.flexfactor.errors import (
    FlexFactorAuthError,
    FlexFactorBusinessError,
    FlexFactorConflict,
    FlexFactorConnectionError,
    FlexFactorError,
    FlexFactorNotFound,
    FlexFactorRateLimited,
    FlexFactorServerError,
    FlexFactorTimeout,
    FlexFactorValidationError,
    error_from_response,
)

__all__ = [
    "AttemptRecord",
    "FlexFactorAuthError",
    "FlexFactorBusinessError",
    "FlexFactorClient",
    "FlexFactorConflict",
    "FlexFactorConnectionError",
    "FlexFactorError",
    "FlexFactorNotFound",
    "FlexFactorRateLimited",
    "FlexFactorServerError",
    "FlexFactorTimeout",
    "FlexFactorValidationError",
    "error_from_response",
]
