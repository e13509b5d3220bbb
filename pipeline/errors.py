"""Errors the pipeline raises for bad input: their message is meant for a person."""


class PipelineError(Exception):
    """Base class: a problem with the input or configuration, not a bug."""


class InvalidInputError(PipelineError):
    """The input file is corrupt, truncated, of an unsupported kind, or inconsistent."""


class TrainingFailedError(PipelineError):
    """Training did not learn to separate objects from background, even after restarts."""
