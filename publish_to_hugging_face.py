"""Publish a trained experiment's model to the Hugging Face Hub, as the GUI's export button does.

    python publish_to_hugging_face.py -p output/user/<experiment> -n <model name>
        [-a <account>] [-t <token>] [--public]

The token comes from -t or, better (it stays out of the shell history and the process list),
the HF_TOKEN environment variable. It is used for the requests only and written nowhere.
HF_ENDPOINT points the script at another Hub. Prints the repo's URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Only the token given here may be sent: never one saved by `hf auth login`.
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="publish_to_hugging_face.py",
        description="Publish an experiment's model to the Hugging Face Hub.",
    )
    parser.add_argument("-p", "--path", required=True, help="the experiment's output folder")
    parser.add_argument("-n", "--name", required=True, help="the model (repo) name on the Hub")
    parser.add_argument(
        "-a", "--account", default="", help="user or organization; default: the token's user"
    )
    parser.add_argument(
        "-t", "--token", default=None, help="a token with write access; default: $HF_TOKEN"
    )
    parser.add_argument(
        "--public", action="store_true", help="create the repo public (default: private)"
    )
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("HF_TOKEN", "")

    from llm_studio.export.package import ExportError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        from llm_studio.export.hub import push_to_hub

        url = push_to_hub(
            args.path, args.name, token, account=args.account or None, private=not args.public
        )
    except ExportError as exc:
        message = str(exc).replace(token, "***") if token else str(exc)
        print(f"Error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
