"""What the store refuses. Every message is meant to be shown to the user as is."""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store refuses; the message is meant to be shown to the user as is."""


class InvalidNameError(StoreError):
    """A dataset or experiment name that is not a single safe folder name."""


class NameTakenError(StoreError):
    """A dataset or experiment with that name already exists."""


class NotFoundError(StoreError):
    """No dataset or experiment with that id."""


class DatasetInUseError(StoreError):
    """Datasets that experiments still link to; `links` maps dataset name -> experiment names."""

    def __init__(self, message: str, links: dict[str, list[str]]):
        super().__init__(message)
        self.links = links
