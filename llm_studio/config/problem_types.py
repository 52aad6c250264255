"""The problem types: one `ProblemType` record each, the only place a type's traits are written.

Everything that differs between problem types reads its record (`problem_type_of(cfg)` or
`problem_type_named(name)`) instead of comparing type strings or probing config sections: the
config class YAML builds, the training task, the backbone's transformers auto class and PEFT
task type, the labels the UI and docs show, and what the type can do (chat, head files, pairs).
torch-free, so the UI can import it at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from llm_studio.config.base import SECTION_NAMES, BaseConfig
from llm_studio.config.causal_lm import CausalLMConfig
from llm_studio.config.classification import ClassificationConfig, RegressionConfig
from llm_studio.config.dpo import DPOConfig
from llm_studio.config.seq2seq import Seq2SeqConfig
from llm_studio.config.settings import ConfigError


@dataclass(frozen=True)
class ProblemType:
    name: str  # `problem_type` in YAML
    label: str  # the guide's name, shown in the UI, the docs and model cards
    config: type[BaseConfig]
    # "module:Class" in llm_studio.training.tasks; `build_task` imports it, so config does not.
    task: str
    auto_model: str  # the transformers auto class the backbone loads with
    peft_task_type: str  # LoRA's task type for that backbone
    generates_text: bool = True  # answers are text: generation settings, chat, text metrics
    has_head: bool = False  # a linear head on the last token; saved beside the backbone
    predicts_values: bool = False  # the head predicts numbers (regression), not classes
    needs_pairs: bool = False  # rows carry a chosen and a rejected answer
    encoder_decoder: bool = False  # the answer comes out of a decoder that never sees it as input

    def __post_init__(self) -> None:
        default = {f.name: f.default for f in dataclasses.fields(self.config)}["problem_type"]
        if default != self.name:
            raise ConfigError(f"{self.config.__name__}.problem_type: {default!r}, not {self.name}")

    @property
    def chains(self) -> bool:
        """Rows may continue earlier rows' conversations (`parent_id_column`); a head reads
        one prompt per row."""
        return not self.has_head

    @property
    def pipeline_tag(self) -> str | None:
        """The Hub's pipeline for the exported model (none for a head: no pipeline fits)."""
        if not self.generates_text:
            return None
        return "text2text-generation" if self.encoder_decoder else "text-generation"


CAUSAL_LM = ProblemType(
    name="text_causal_language_modeling",
    label="Causal Language Modeling",
    config=CausalLMConfig,
    task="causal_lm:CausalLMTask",
    auto_model="AutoModelForCausalLM",
    peft_task_type="CAUSAL_LM",
)
DPO = ProblemType(
    name="text_dpo_modeling",
    label="DPO Modeling",
    config=DPOConfig,
    task="dpo:DPOTask",
    auto_model="AutoModelForCausalLM",
    peft_task_type="CAUSAL_LM",
    needs_pairs=True,
)
SEQ2SEQ = ProblemType(
    name="text_sequence_to_sequence_modeling",
    label="Sequence To Sequence Modeling",
    config=Seq2SeqConfig,
    task="seq2seq:Seq2SeqTask",
    auto_model="AutoModelForSeq2SeqLM",
    peft_task_type="SEQ_2_SEQ_LM",
    encoder_decoder=True,
)
# The label types put a head on a causal LM's last hidden state.
CLASSIFICATION = ProblemType(
    name="text_causal_classification_modeling",
    label="Causal Classification Modeling",
    config=ClassificationConfig,
    task="classification:LabelTask",
    auto_model="AutoModelForCausalLM",
    peft_task_type="CAUSAL_LM",
    generates_text=False,
    has_head=True,
)
REGRESSION = dataclasses.replace(
    CLASSIFICATION,
    name="text_causal_regression_modeling",
    label="Causal Regression Modeling",
    config=RegressionConfig,
    predicts_values=True,
)

# In the order the UI offers them.
ALL_PROBLEM_TYPES = (CAUSAL_LM, DPO, SEQ2SEQ, CLASSIFICATION, REGRESSION)
DEFAULT_PROBLEM_TYPE = CAUSAL_LM.name
_BY_NAME = {p.name: p for p in ALL_PROBLEM_TYPES}

# Views of the records for code that only needs the class or the label of a name.
PROBLEM_TYPES: dict[str, type[BaseConfig]] = {p.name: p.config for p in ALL_PROBLEM_TYPES}
PROBLEM_TYPE_LABELS: dict[str, str] = {p.name: p.label for p in ALL_PROBLEM_TYPES}


def problem_type_named(name: object) -> ProblemType:
    """The record of `problem_type: name`; a ConfigError naming the choices otherwise."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ConfigError(f"problem_type: got {name!r}, expected one of {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def problem_type_of(cfg: BaseConfig) -> ProblemType:
    return problem_type_named(cfg.problem_type)


__all__ = [
    "ALL_PROBLEM_TYPES",
    "DEFAULT_PROBLEM_TYPE",
    "PROBLEM_TYPES",
    "PROBLEM_TYPE_LABELS",
    "SECTION_NAMES",
    "BaseConfig",
    "CausalLMConfig",
    "ProblemType",
    "problem_type_named",
    "problem_type_of",
]
