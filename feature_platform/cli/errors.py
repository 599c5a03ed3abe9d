"""The one error boundary of ``fp``: whatever a command lets escape becomes one line on stderr and an exit code.

Exit 2 for bad input (the usage errors below), 1 for everything else: a failed check, gate or refusal, or an
unexpected error. The traceback is shown only with ``-v``.
"""

from __future__ import annotations

import sys

from feature_platform.cli.common import EXIT_FAILED, EXIT_USAGE, CheckFailed, UsageError, yaml_problem

# Errors that mean "the input is wrong", as module:Class. They are looked up in sys.modules only: an exception of
# a class whose module was never imported cannot have been raised, so reporting imports nothing.
USAGE_ERRORS = (
    "feature_platform.contracts.paths:UnsafePathError",
    "feature_platform.contracts.provenance:SourceDateEpochError",
    "feature_platform.attest.attestation:AttestationError",
    "feature_platform.contracts.feature_contract:ContractError",
    "feature_platform.training.profiles:HyperparameterError",
    "feature_platform.datasets.definitions.model:DefinitionError",
    "feature_platform.warehouse.connection:WarehouseError",
    "feature_platform.quality.gate:QualityConfigError",
    "feature_platform.quality.thresholds:ThresholdsError",
    "feature_platform.quality.baseline:BaselineError",
    "feature_platform.orchestration.headless:RunInputError",
    "pydantic_core:ValidationError",
    "yaml:YAMLError",  # configuration the user wrote; the CLI's own JSON inputs are checked where they are read
)


def _loaded(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    classes = []
    for name in names:
        module, _, attr = name.partition(":")
        loaded = sys.modules.get(module)
        cls = getattr(loaded, attr, None) if loaded is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            classes.append(cls)
    return tuple(classes)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line without the ``fp: error:`` prefix) for an exception a command let escape."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE, _first_line(str(exc))
    if isinstance(exc, CheckFailed):
        return EXIT_FAILED, _first_line(str(exc))
    code = EXIT_USAGE if isinstance(exc, _loaded(USAGE_ERRORS)) else EXIT_FAILED
    if "pydantic_core" in sys.modules:  # then importing pydantic costs nothing
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            from feature_platform.contracts.manifest import validation_message

            return code, validation_message(exc, exc.title)
    if isinstance(exc, _loaded(("yaml:YAMLError",))):
        return code, yaml_problem(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else type(exc).__name__
        return code, f"{where}: {exc.strerror}"
    message = _first_line(str(exc))
    if type(exc).__module__.startswith("feature_platform.") and message:
        return code, message
    return code, f"internal error: {type(exc).__name__}: {message or 'no message'} (rerun with -v for the traceback)"
