"""Data connectors: each puts a source's raw files (dataframes or zips) into a staging folder.

    connector = CONNECTORS["s3"]()          # or get_connector("s3")
    paths = connector.fetch({"bucket": ..., "key": ...}, staging_dir)

The import service (`llm_studio.store.imports`) runs them; nothing here imports torch.
"""

from __future__ import annotations

from llm_studio.connectors.base import (
    DATAFRAME_SUFFIXES,
    IMPORT_SUFFIXES,
    Connector,
    ConnectorError,
    Param,
)
from llm_studio.connectors.kaggle_api import KaggleCommand, KaggleConnector, parse_kaggle_command
from llm_studio.connectors.local import DirEntry, LocalConnector, list_dir, local_roots
from llm_studio.connectors.s3 import S3Connector
from llm_studio.connectors.upload import UploadConnector

CONNECTORS: dict[str, type[Connector]] = {
    "upload": UploadConnector,
    "local": LocalConnector,
    "s3": S3Connector,
    "kaggle": KaggleConnector,
}


def get_connector(name: str, **kwargs) -> Connector:
    if name not in CONNECTORS:
        raise ConnectorError(f"unknown data source {name!r}; use one of {sorted(CONNECTORS)}")
    return CONNECTORS[name](**kwargs)


__all__ = [
    "CONNECTORS",
    "DATAFRAME_SUFFIXES",
    "IMPORT_SUFFIXES",
    "Connector",
    "ConnectorError",
    "DirEntry",
    "KaggleCommand",
    "KaggleConnector",
    "LocalConnector",
    "Param",
    "S3Connector",
    "UploadConnector",
    "get_connector",
    "list_dir",
    "local_roots",
    "parse_kaggle_command",
]
