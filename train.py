"""Fine-tune a model from a YAML config: python train.py -Y cfg.yaml [--section.key value ...]"""

from llm_studio.training.cli import exit_now, main

if __name__ == "__main__":
    exit_now(main())
