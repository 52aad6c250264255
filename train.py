"""Fine-tune a model from a YAML config: python train.py -Y cfg.yaml [--section.key value ...]"""

import sys

from llm_studio.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
