"""The experiment list's per-experiment summary follows the folder incrementally."""

from __future__ import annotations

from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.experiments.summary import SummaryCache


def test_summary_reads_new_points_status_changes_and_rewritten_charts(tmp_path):
    folder = ExperimentFolder(tmp_path)
    folder.write_status(ExperimentStatus(state="queued"))
    folder.append_chart("validation/BLEU", 10, 5.0, 0.5)
    folder.append_chart("validation/Perplexity", 10, 9.0, 0.5)
    cache = SummaryCache()
    summary = cache.get(tmp_path)
    assert summary.status.state == "queued"
    assert summary.best == {"BLEU": 5.0, "Perplexity": 9.0}

    folder.append_chart("validation/BLEU", 20, 3.0, 1.0)  # worse BLEU: best stays
    folder.append_chart("validation/Perplexity", 20, 4.0, 1.0)  # lower perplexity is better
    folder.write_status(ExperimentStatus(state="finished", progress=1.0))
    summary = cache.get(tmp_path)
    assert summary.best == {"BLEU": 5.0, "Perplexity": 4.0}
    assert summary.status.state == "finished"

    folder.charts_file.write_text("")  # a rerun starts fresh charts
    folder.append_chart("validation/BLEU", 1, 1.0, 0.1)
    assert cache.get(tmp_path).best == {"BLEU": 1.0}


def test_summary_follows_the_latest_throughput_and_knows_old_runs_lack_it(tmp_path):
    folder = ExperimentFolder(tmp_path)
    folder.append_chart("train/loss", 1, 2.0, 0.1)
    cache = SummaryCache()
    assert cache.get(tmp_path).tokens_per_s is None  # a run from before tokens/s was charted
    folder.append_chart("train/tokens_per_s", 1, 900.0, 0.1)
    folder.append_chart("train/tokens_per_s", 2, 1200.0, 0.2)
    assert cache.get(tmp_path).tokens_per_s == 1200.0
    folder.charts_file.write_text("")  # a rerun starts fresh charts
    folder.append_chart("train/loss", 1, 2.0, 0.1)
    assert cache.get(tmp_path).tokens_per_s is None
