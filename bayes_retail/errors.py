"""Exceptions raised by bayes_retail.

Every error a user can cause by their input derives from :class:`BayesRetailError`;
the CLI prints those as one line, without a traceback.
"""

from __future__ import annotations


class BayesRetailError(Exception):
    """Base class of the errors a user's input can cause."""


class DataError(BayesRetailError):
    """Bad input data: names the file (or table) and the column at fault.

    Parameters
    ----------
    message
        What is wrong, in words.
    file
        The file or table the problem was found in.
    column
        The column at fault, when there is one.
    """

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None):
        self.file = file
        self.column = column
        where = ""
        if file is not None:
            where = f"{file}"
            if column is not None:
                where += f", column '{column}'"
            where += ": "
        super().__init__(where + message)


class ArtifactError(BayesRetailError):
    """A fitted artifact (trace, pricing model) that cannot be used: names the file and why."""

    def __init__(self, message: str, *, file: str | None = None):
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)
