"""The experiment runner: starts, queues, watches, stops and deletes training processes.

Imported by the UI process, so it never imports torch or transformers.
"""

from llm_studio.experiments.status import process_alive
from llm_studio.runner.processes import detect_gpu_count
from llm_studio.runner.runner import DIED, PROCESS_LOG, Runner, RunnerError

__all__ = ["DIED", "PROCESS_LOG", "Runner", "RunnerError", "detect_gpu_count", "process_alive"]
