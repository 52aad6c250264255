"""Chat with a trained experiment: python prompt.py -e output/user/<experiment>"""

import sys

from llm_studio.prompt_cli import main

if __name__ == "__main__":
    sys.exit(main())
