"""Kaggle: the user pastes a Kaggle API command; only two download forms are understood, and
the command is never run in a shell. The download goes through the Kaggle Python SDK with the
username and key the user typed, kept in memory only (never written to disk or logged).

Accepted:
    kaggle datasets download -d <owner>/<dataset> [-f <file>]
    kaggle competitions download -c <competition> [-f <file>]

`H2O_LLM_STUDIO_KAGGLE_ENDPOINT` (or the connector's `endpoint` argument) points the client at
another host, e.g. a stand-in server in tests; by default it talks to api.kaggle.com.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_studio.connectors.base import (
    CHUNK,
    IMPORT_SUFFIXES,
    ByteBudget,
    Connector,
    ConnectorError,
    Param,
    human_size,
    safe_file_name,
    text_param,
    unique_path,
)
from llm_studio.env import setting_env

ENDPOINT_ENV = "H2O_LLM_STUDIO_KAGGLE_ENDPOINT"

# Letters, digits and the few marks slugs and file names use; anything else (quotes, $, ;, |,
# &, backticks, redirections, globs, newlines...) is shell syntax we refuse outright.
_ALLOWED = re.compile(r"^[A-Za-z0-9 ._/-]+$")
_OWNER = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
_SLUG = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_DATASET_RE = re.compile(rf"^{_OWNER}/{_SLUG}$")
_COMPETITION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,299}$")

USAGE = (
    "use `kaggle datasets download -d <owner>/<dataset>` or "
    "`kaggle competitions download -c <competition>`, optionally with `-f <file>`"
)


@dataclass(frozen=True)
class KaggleCommand:
    kind: str  # "datasets" or "competitions"
    ref: str  # "owner/dataset" or the competition name
    file: str | None = None

    @property
    def owner_slug(self) -> str:
        return self.ref.split("/", 1)[0] if self.kind == "datasets" else ""

    @property
    def slug(self) -> str:
        return self.ref.split("/", 1)[1] if self.kind == "datasets" else self.ref


def parse_kaggle_command(command: str) -> KaggleCommand:
    """Validate a pasted Kaggle command; anything but the two download forms is refused."""
    if not isinstance(command, str) or not command.strip():
        raise ConnectorError(f"Kaggle: the API command is required; {USAGE}")
    tokens = _tokens(command.strip())
    kind = _download_kind(tokens)
    ref_flag = "-d" if kind == "datasets" else "-c"
    options = _options(tokens[3:], ref_flag)
    if ref_flag not in options:
        raise ConnectorError(f"Kaggle: `{ref_flag}` is missing; {USAGE}")
    ref = options[ref_flag]
    pattern = _DATASET_RE if kind == "datasets" else _COMPETITION_RE
    if not pattern.match(ref) or ".." in ref:
        what = "<owner>/<dataset>" if kind == "datasets" else "a competition name"
        raise ConnectorError(f"Kaggle: {ref!r} is not {what}")
    file = options.get("-f")
    if file is not None:
        _check_file(file)
    return KaggleCommand(kind, ref, file)


def _tokens(text: str) -> list[str]:
    """The command's words, once it is known to hold no shell syntax."""
    if not _ALLOWED.match(text):
        bad = sorted({c for c in text if not _ALLOWED.match(c)})
        shown = ", ".join(repr(c) for c in bad)
        raise ConnectorError(
            f"Kaggle: the command holds characters it does not need ({shown}); "
            f"shell syntax is not accepted; {USAGE}"
        )
    return text.split()


def _download_kind(tokens: list[str]) -> str:
    """The `<kind>` of `kaggle <kind> download ...`: "datasets" or "competitions"."""
    if tokens[0] != "kaggle":
        raise ConnectorError(f"Kaggle: the command must start with `kaggle`; {USAGE}")
    if len(tokens) < 3 or tokens[1] not in ("datasets", "competitions") or tokens[2] != "download":
        shown = " ".join(tokens[1:3])
        raise ConnectorError(f"Kaggle: `kaggle {shown}` is not supported; {USAGE}")
    return tokens[1]


def _options(rest: list[str], ref_flag: str) -> dict[str, str]:
    """`ref_flag` and `-f`, each at most once and with a value; no other option."""
    options: dict[str, str] = {}
    for i in range(0, len(rest), 2):
        option = rest[i]
        if option not in (ref_flag, "-f"):
            raise ConnectorError(f"Kaggle: option {option!r} is not supported; {USAGE}")
        if option in options:
            raise ConnectorError(f"Kaggle: option {option} is given twice")
        if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
            raise ConnectorError(f"Kaggle: option {option} needs a value")
        options[option] = rest[i + 1]
    return options


def _check_file(file: str) -> None:
    parts = file.split("/")
    if not _FILE_RE.match(file) or any(p in ("", ".", "..") for p in parts):
        raise ConnectorError(f"Kaggle: {file!r} is not a valid file name")
    if Path(file).suffix.lower() not in IMPORT_SUFFIXES:
        raise ConnectorError(
            f"Kaggle: {file!r} is not a supported file; use {', '.join(IMPORT_SUFFIXES)}"
        )


class KaggleConnector(Connector):
    """params: `command` (a Kaggle API command), `username`, `key`."""

    name = "kaggle"
    label = "Kaggle"
    params = (
        Param("command", "Kaggle API command", tip="e.g. kaggle datasets download -d owner/name"),
        Param("username", "Kaggle username"),
        Param("key", "Kaggle secret key", secret=True),
    )

    def __init__(self, max_bytes: int | None = None, endpoint: str | None = None) -> None:
        super().__init__(max_bytes)
        self.endpoint = endpoint

    def fetch(self, params: Mapping[str, Any], staging_dir: Path) -> list[Path]:
        command = parse_kaggle_command(params.get("command") or "")
        username = text_param(params, "username", "Kaggle: the username")
        key = params.get("key") or ""
        if not isinstance(key, str) or not key.strip():
            raise ConnectorError("Kaggle: the secret key is required")
        endpoint = (self.endpoint or (setting_env(ENDPOINT_ENV) or "")).strip().rstrip("/")
        if endpoint and not re.match(r"^https?://", endpoint):
            raise ConnectorError(f"Kaggle: endpoint {endpoint!r} must start with http(s)://")
        staging_dir.mkdir(parents=True, exist_ok=True)
        return [self._download(command, username, key.strip(), endpoint, staging_dir)]

    def _download(
        self, cmd: KaggleCommand, username: str, key: str, endpoint: str, staging_dir: Path
    ) -> Path:
        import requests
        from kagglesdk import KaggleClient, KaggleEnv

        where = f"Kaggle {cmd.kind} {cmd.ref}" + (f" file {cmd.file}" if cmd.file else "")
        # Credentials go to the client in memory only; verbose stays off (it prints headers).
        client = KaggleClient(env=KaggleEnv.PROD, verbose=False, username=username, password=key)
        http = client.http_client()
        if endpoint:
            if not hasattr(http, "_endpoint"):
                raise ConnectorError("Kaggle: this kagglesdk version cannot change its endpoint")
            http._endpoint = endpoint
        response = None
        try:
            with client:
                # The SDK prefers a token from the environment or ~/.kaggle; the user's
                # username and key are what this import must use.
                http._session.auth = requests.auth.HTTPBasicAuth(username, key)
                response = self._request(client, cmd)
                return self._save(response, cmd, staging_dir, where)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise ConnectorError(
                    f"{where}: Kaggle refused the username and key (HTTP {status}); check them "
                    "and that the rules of the dataset or competition are accepted"
                ) from None
            if status == 404:
                raise ConnectorError(f"{where}: not found on Kaggle (HTTP 404)") from None
            raise ConnectorError(f"{where}: Kaggle answered HTTP {status}") from None
        except requests.RequestException as exc:
            raise ConnectorError(f"{where}: cannot reach Kaggle ({type(exc).__name__})") from None
        finally:
            if response is not None:
                response.close()

    @staticmethod
    def _request(client: Any, cmd: KaggleCommand) -> Any:
        if cmd.kind == "datasets":
            from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

            request = ApiDownloadDatasetRequest()
            request.owner_slug = cmd.owner_slug
            request.dataset_slug = cmd.slug
            if cmd.file:
                request.file_name = cmd.file
            return client.datasets.dataset_api_client.download_dataset(request)
        from kagglesdk.competitions.types.competition_api_service import (
            ApiDownloadDataFileRequest,
            ApiDownloadDataFilesRequest,
        )

        api = client.competitions.competition_api_client
        if cmd.file:
            request = ApiDownloadDataFileRequest()
            request.competition_name = cmd.ref
            request.file_name = cmd.file
            return api.download_data_file(request)
        request = ApiDownloadDataFilesRequest()
        request.competition_name = cmd.ref
        return api.download_data_files(request)

    def _save(self, response: Any, cmd: KaggleCommand, staging_dir: Path, where: str) -> Path:
        """The response streams the file (the SDK follows Kaggle's redirect to storage)."""
        budget = ByteBudget(self.max_bytes)
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > budget.max_bytes:
            raise ConnectorError(
                f"{where}: {human_size(int(length))} is larger than the limit of "
                f"{human_size(budget.max_bytes)}"
            )
        chunks = response.iter_content(CHUNK)
        first = next(chunks, b"")
        if cmd.file:
            name = safe_file_name(cmd.file, where)
            # Kaggle wraps large single files in a zip.
            if first.startswith(b"PK\x03\x04") and not name.lower().endswith(".zip"):
                name += ".zip"
        else:
            name = f"{cmd.slug}.zip"
        dest = unique_path(staging_dir, name)
        try:
            with open(dest, "xb") as out:
                chunk = first
                while chunk:
                    budget.take(len(chunk), where)
                    out.write(chunk)
                    chunk = next(chunks, b"")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        if dest.stat().st_size == 0:
            dest.unlink()
            raise ConnectorError(f"{where}: Kaggle sent an empty file")
        return dest
