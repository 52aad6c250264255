"""Publish an experiment's model to the Hugging Face Hub.

What goes up is what the model zip holds at its root: the merged model from `checkpoint/`
(safetensors weights, config, tokenizer and chat template), the generated model card as
`README.md` and `cfg.yaml`, in one commit. With `save_checkpoint: each_evaluation_epoch` only the
latest checkpoint is published.

The token is handed to every request explicitly and kept nowhere else: no `login()`, no token
file, no environment variable set, never logged, and removed from any error message. The Hub
address is `HF_ENDPOINT` as it is when `push_to_hub` runs (default https://huggingface.co).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from llm_studio.export.package import ExportError, Progress, model_entries, require_checkpoint
from llm_studio.names import name_problem

if TYPE_CHECKING:  # imported when publishing: the UI starts without it
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
COMMIT_MESSAGE = "Upload model trained with LLM Studio"
# What the Hub asks of user, organization and repo names on top of the store's name rule
# (`llm_studio.names`): no spaces, a letter or digit first, no '-' or '.' last, no '--',
# at most 96 characters.
_HUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
HUB_MAX_NAME_LENGTH = 96


class HubError(ExportError):
    """Publishing failed; the message is one line and never holds the token."""


def hub_endpoint() -> str:
    """The Hub's address: HF_ENDPOINT read now (so a value set after import counts)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def check_name(name: str, what: str) -> str:
    """`name` if it passes the store's name rule and the Hub's additions to it."""
    problem = name_problem(name)
    if problem is not None:
        raise HubError(f"{what} {problem}")
    if len(name) > HUB_MAX_NAME_LENGTH or not _HUB_NAME.fullmatch(name) or "--" in name:
        raise HubError(
            f"{what} {name!r} is not valid on the Hub: use letters, digits, '-', '_' and '.', "
            f"at most {HUB_MAX_NAME_LENGTH}, starting with a letter or digit, without spaces "
            "or '--'"
        )
    return name


def push_to_hub(
    folder: Path,
    repo_name: str,
    token: str,
    account: str | None = None,
    private: bool = True,
    progress: Progress | None = None,
) -> str:
    """Publish the experiment's model to `<account>/<repo_name>`; returns the repo's URL.

    An empty `account` means the token's own user. The repo is created when missing (private
    unless `private=False`; an existing repo keeps its visibility) and receives one commit.
    Raises CheckpointUnavailable when there is no model, HubError when the Hub refuses.
    """
    token = (token or "").strip()
    if not token:
        raise HubError("a Hugging Face token with write access is needed (HF_TOKEN or -t)")
    name, account = _repo_names(repo_name, account)
    require_checkpoint(folder)  # say "no model" before talking to the Hub

    from huggingface_hub import HfApi, constants

    endpoint = hub_endpoint()
    if constants.is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; unset it first")
    api = HfApi(endpoint=endpoint, token=token, library_name="llm-studio")
    report = progress or (lambda fraction: None)
    report(0.0)
    try:
        if account is None:
            account = api.whoami()["name"]
        repo_id = f"{account}/{name}"
        log.info("Publishing %s to %s/%s", folder, endpoint, repo_id)
        _commit_model(api, folder, repo_id, private, report)
    except ExportError:
        raise
    except Exception as exc:  # the Hub client's many error types; reported as one line
        raise HubError(_describe(exc, token, endpoint, account)) from None
    report(1.0)
    url = f"{endpoint}/{repo_id}"
    log.info("Published %s", url)
    return url


def _repo_names(repo_name: str, account: str | None) -> tuple[str, str | None]:
    """(model name, account or None for the token's own user), each checked; "owner/name"
    in `repo_name` gives the account when `account` is empty."""
    repo_name, account = (repo_name or "").strip(), (account or "").strip()
    if "/" in repo_name and not account:
        account, repo_name = (part.strip() for part in repo_name.split("/", 1))
    name = check_name(repo_name, "model name")
    return name, (check_name(account, "account name") if account else None)


def _commit_model(api: HfApi, folder: Path, repo_id: str, private: bool, report: Progress) -> None:
    """Create the repo if needed and commit the model zip's entries to it, reporting progress
    from 0.05 to 0.95 as the large files go up."""
    from huggingface_hub import CommitOperationAdd

    entries = model_entries(folder, model_name=repo_id)
    operations = [
        CommitOperationAdd(
            path_in_repo=rel, path_or_fileobj=src if isinstance(src, bytes) else str(src)
        )
        for src, rel in entries
    ]
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    report(0.05)
    # Large files (weights) go to the Hub's storage one by one, so progress means something;
    # the commit then names them and carries the small files.
    total = sum(op.upload_info.size for op in operations) or 1
    done = 0
    for op in operations:
        api.preupload_lfs_files(repo_id, additions=[op], free_memory=False)
        done += op.upload_info.size
        report(0.05 + 0.9 * done / total)
    api.create_commit(repo_id, operations=operations, commit_message=COMMIT_MESSAGE)


def _describe(exc: Exception, token: str, endpoint: str, account: str | None) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        text = "the Hub refused the token (401 Unauthorized): check that it is valid"
    elif status == 403:
        text = (
            f"the token may not write to '{account}' (403 Forbidden): it needs write access "
            "to that account"
        )
    elif type(exc).__name__ == "OfflineModeIsEnabled":
        text = "HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; unset it first"
    elif isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore")):
        text = f"cannot reach the Hub at {endpoint}: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    lines = [" ".join(part.split()) for part in text.splitlines() if part.strip()]
    line = " ".join(lines[:2])
    if status and str(status) not in line:
        line = f"{line} (HTTP {status})"
    return "publishing failed: " + line.replace(token, "***")
