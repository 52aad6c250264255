"""The dataset import service: imports end in data/user with a config and a record; every bad
case leaves nothing in data/user, data/tmp or the records; previews, merge and edit."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli, tiny_config, write_yaml

from llm_studio.config.yaml_io import load_config
from llm_studio.data.conversations import build_conversations
from llm_studio.data.prompt_format import PromptFormat
from llm_studio.data.readers import DataError
from llm_studio.models.offline_backbone import DEFAULT_BACKBONE, local_copy
from llm_studio.store import Store
from llm_studio.store.archives import ImportLimits
from llm_studio.store.columns import suggest_columns, suggest_dataframes
from llm_studio.store.import_types import (
    STAGING_MAX_AGE_S,
    DatasetImportError,
    InMemoryRecords,
    StagedImport,
    validate_dataset_name,
)
from llm_studio.store.imports import ImportService
from llm_studio.store.recovery import recover

ROWS = pd.DataFrame(
    {
        "instruction": ["Say hi.", "Say bye.", "Count to two.", "Name a color."],
        "output": ["hi", "bye", "one two", "red"],
    }
)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "work"))
    return tmp_path / "work"


@pytest.fixture
def records():
    return InMemoryRecords()


@pytest.fixture
def service(work, records):
    return ImportService(records)


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


def upload(path: Path, name: str | None = None) -> dict:
    return {"paths": [str(path)], "names": [name or path.name]}


def make_zip(path: Path, members: dict, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)  # a str name takes the archive's compression
    return path


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def assert_nothing_left(work: Path, records: InMemoryRecords) -> None:
    user = work / "data" / "user"
    assert not user.exists() or list(user.iterdir()) == []
    tmp = work / "data" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert records.records == {}


# --- successful imports ---


def test_csv_import(service, records, work, src):
    ROWS.to_csv(src / "chat.csv", index=False)
    record = service.import_dataset("upload", upload(src / "chat.csv"), name="my chat")
    folder = work / "data" / "user" / "my chat"
    assert sorted(p.name for p in folder.iterdir()) == ["cfg.yaml", "chat.csv"]
    assert records.records["my chat"] == record
    assert record.folder == folder and record.train_rows == 4 and record.labels == ("output",)
    assert record.validation_dataframe is None and record.validation_rows is None
    cfg, warnings = load_config(folder / "cfg.yaml")
    assert warnings == []
    assert cfg.problem_type == "text_causal_language_modeling"
    assert cfg.dataset.train_dataframe == str(folder / "chat.csv")
    assert Path(cfg.dataset.train_dataframe).is_absolute()
    assert cfg.dataset.validation_strategy == "automatic"
    assert cfg.dataset.prompt_column == ["instruction"] and cfg.dataset.answer_column == "output"
    assert list((work / "data" / "tmp").iterdir()) == []


def test_parquet_import(service, records, work, src):
    ROWS.to_parquet(src / "rows.parquet")
    record = service.import_dataset(
        "upload",
        upload(src / "rows.parquet"),
        name="pq",
        settings={"prompt_column": "instruction", "answer_column": "output"},
    )
    assert record.train_dataframe == work / "data" / "user" / "pq" / "rows.parquet"
    assert (work / "data" / "user" / "pq" / "cfg.yaml").is_file()
    assert "pq" in records.records


def test_zip_with_train_and_validation(service, records, work, src):
    archive = make_zip(
        src / "bundle.zip",
        {
            "bundle/train.csv": csv_bytes(ROWS),
            "bundle/validation.csv": csv_bytes(ROWS.head(2)),
            "bundle/README.md": b"notes",
            "__MACOSX/bundle/._train.csv": b"junk",
        },
    )
    staged = service.stage("upload", upload(archive))
    assert staged.dataframes == ["bundle/train.csv", "bundle/validation.csv"]
    assert suggest_dataframes(staged.dataframes) == ("bundle/train.csv", "bundle/validation.csv")
    record = service.import_dataset("upload", upload(archive), name="zipped")
    service.discard(staged)
    folder = work / "data" / "user" / "zipped"
    assert record.validation_dataframe == folder / "bundle" / "validation.csv"
    assert (record.train_rows, record.validation_rows) == (4, 2)
    data = yaml.safe_load((folder / "cfg.yaml").read_text())
    assert data["dataset"]["validation_strategy"] == "custom"
    assert data["dataset"]["validation_dataframe"] == str(folder / "bundle" / "validation.csv")
    assert not (folder / "bundle" / "README.md").exists() and not (folder / "__MACOSX").exists()
    assert_nothing_left_in_tmp(work)


def assert_nothing_left_in_tmp(work: Path) -> None:
    tmp = work / "data" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_step_by_step_flow_and_preview(service, records, work, src):
    ROWS.to_csv(src / "train.csv", index=False)
    staged = service.stage("upload", upload(src / "train.csv"))
    assert isinstance(staged, StagedImport) and staged.root.parent == work / "data" / "tmp"
    (info,) = service.inspect(staged)
    assert (info.name, info.rows, info.columns, info.error) == (
        "train.csv",
        4,
        ["instruction", "output"],
        None,
    )
    settings = service.suggest_columns("text_causal_language_modeling", info.columns)
    assert settings == {"prompt_column": ["instruction"], "answer_column": "output"}
    configured = service.configure(staged, train_dataframe="train.csv", settings=settings)
    assert len(configured.preview) == 4
    first = configured.preview[0]
    assert first.prompt == "<|prompt|>Say hi.<|im_end|><|answer|>"
    assert first.answer == "hi<|im_end|>"
    assert first.text == "<|prompt|>Say hi.<|im_end|><|answer|>hi<|im_end|>"
    assert not (work / "data" / "user").exists()  # nothing is written before the commit
    record = service.commit(staged, "stepwise", configured)
    assert record.name == "stepwise" and not staged.root.exists()


def test_preview_of_chains_system_dpo_and_labels(service, src):
    chain = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "parent_id": [None, "a", None],
            "system": ["Be brief.", "", "Be kind."],
            "prompt": ["Hi", "And now?", "Help"],
            "response": ["Hello", "Bye", "Sure"],
            "rejected_response": ["Go away", "No", "Never"],
            "label": [0, 1, 1],
            "other_prompt": ["X", "Y", "Z"],
        }
    )
    chain.to_csv(src / "c.csv", index=False)
    staged = service.stage("upload", upload(src / "c.csv"))
    columns = list(chain.columns)
    settings = suggest_columns("text_causal_language_modeling", columns)
    assert settings == {
        "prompt_column": ["prompt"],
        "answer_column": "response",
        "system_column": "system",
        "parent_id_column": "parent_id",
    }
    configured = service.configure(staged, train_dataframe="c.csv", settings=settings)
    # Only full conversations: the row continued by "b" is not a sample of its own.
    assert [s.prompt for s in configured.preview] == [
        "<|system|>Be brief.<|im_end|><|prompt|>Hi<|im_end|><|answer|>Hello<|im_end|><|prompt|>And now?<|im_end|>"
        "<|answer|>",
        "<|system|>Be kind.<|im_end|><|prompt|>Help<|im_end|><|answer|>",
    ]

    dpo = suggest_columns("text_dpo_modeling", columns)
    assert dpo["rejected_answer_column"] == "rejected_response"
    configured = service.configure(
        staged, problem_type="text_dpo_modeling", train_dataframe="c.csv", settings=dpo
    )
    assert [(s.answer, s.rejected_answer) for s in configured.preview] == [
        ("Bye<|im_end|>", "No<|im_end|>"),
        ("Sure<|im_end|>", "Never<|im_end|>"),
    ]
    assert configured.preview[0].rejected_prompt is None
    configured = service.configure(
        staged,
        problem_type="text_dpo_modeling",
        train_dataframe="c.csv",
        settings={**dpo, "rejected_prompt_column": "other_prompt"},
    )
    assert configured.preview[0].rejected_prompt == (
        "<|system|>Be brief.<|im_end|><|prompt|>Hi<|im_end|><|answer|>Hello<|im_end|><|prompt|>Y<|im_end|><|answer|>"
    )

    labels = suggest_columns("text_causal_classification_modeling", columns)
    assert labels["answer_column"] == ["label"]
    configured = service.configure(
        staged,
        problem_type="text_causal_classification_modeling",
        train_dataframe="c.csv",
        settings={**labels, "prompt_column": ["prompt"], "system_column": None},
        preview_samples=2,
    )
    assert [(s.prompt, s.answer) for s in configured.preview] == [
        ("<|prompt|>Hi<|im_end|><|answer|>", "0"),
        ("<|prompt|>And now?<|im_end|><|answer|>", "1"),
    ]
    assert configured.labels == ("label",)
    service.discard(staged)


# --- failures leave nothing behind ---


def _bad_zip_absolute(src: Path) -> Path:
    return make_zip(src / "abs.zip", {"/etc/evil.csv": csv_bytes(ROWS)})


def _bad_zip_parent(src: Path) -> Path:
    return make_zip(src / "up.zip", {"ok.csv": csv_bytes(ROWS), "../../evil.csv": b"a,b\n1,2\n"})


def _bad_zip_backslash(src: Path) -> Path:
    return make_zip(src / "win.zip", {"..\\evil.csv": csv_bytes(ROWS)})


def _bad_zip_link(src: Path) -> Path:
    info = zipfile.ZipInfo("link.csv")
    info.external_attr = (0o120777 << 16) | 0
    return make_zip(src / "link.zip", {info: "/etc/passwd"})


def _zip_bomb(src: Path) -> Path:
    return make_zip(src / "bomb.zip", {"bomb.csv": b"a\n" + b"0" * (6 * 1024 * 1024)})


def _write(src: Path, name: str, data: bytes) -> Path:
    (src / name).write_bytes(data)
    return src / name


@pytest.mark.parametrize(
    "make, limits, settings, message",
    [
        (lambda s: _write(s, "empty.csv", b""), None, None, "empty.csv: the file is empty"),
        (lambda s: s / "never-arrived.csv", None, None, "'never-arrived.csv' was not received"),
        (
            lambda s: _write(
                s, "latin.csv", "instruction,output\ncaf\xe9,ol\xe9\n".encode("latin-1")
            ),
            None,
            None,
            # pandas named byte 3 (its offset inside a decoding chunk); the bad byte is at 22
            r"latin.csv: not UTF-8 text \(invalid continuation byte at byte 22, line 2\)",
        ),
        (
            lambda s: _write(s, "broken.parquet", b"PAR1 this is not parquet at all"),
            None,
            None,
            "broken.parquet: cannot be read as parquet",
        ),
        (
            lambda s: _write(s, "rows.csv", csv_bytes(ROWS)),
            None,
            {"answer_column": "reply"},
            r"rows.csv: column 'reply' \(dataset.answer_column\) not found",
        ),
        (
            lambda s: _write(s, "rows.csv", csv_bytes(ROWS)),
            None,
            {"system_column": "sys"},
            r"column 'sys' \(dataset.system_column\) not found",
        ),
        (
            lambda s: _write(s, "rows.csv", csv_bytes(ROWS)),
            None,
            {"parent_id_column": "instruction"},
            r"column 'id' \(dataset.parent_id_column\) not found",
        ),
        (
            _bad_zip_parent,
            None,
            None,
            "up.zip: members pointing outside the archive: '../../evil.csv'; refused",
        ),
        (_bad_zip_backslash, None, None, r"members pointing outside the archive"),
        (_bad_zip_absolute, None, None, "abs.zip: members with an absolute path: '/etc/evil.csv'"),
        (_bad_zip_link, None, None, "link.zip: members that are links: 'link.csv'"),
        (
            _zip_bomb,
            ImportLimits(max_total_bytes=1024 * 1024, max_ratio=1e9),
            None,
            r"bomb.zip: would expand to 6.0 MiB, more than the limit of 1.0 MiB \(possible zip "
            "bomb",
        ),
        (
            _zip_bomb,
            ImportLimits(),
            None,
            r"members expanding more than 100 times \(possible zip bomb\): 'bomb.csv' \(\d+ times\)",
        ),
        (
            lambda s: make_zip(s / "many.zip", {f"f{i}.csv": b"a\n1\n" for i in range(5)}),
            ImportLimits(max_members=3),
            None,
            "many.zip: 5 members, more than the limit of 3",
        ),
        (
            lambda s: make_zip(s / "nodata.zip", {"readme.txt": b"hello"}),
            None,
            None,
            "no dataframe found",
        ),
        (lambda s: _write(s, "bad.zip", b"PK not a zip"), None, None, "bad.zip: not a valid zip"),
    ],
    ids=[
        "empty",
        "upload-missing",
        "encoding",
        "corrupt-parquet",
        "missing-answer-column",
        "missing-system-column",
        "parent-without-id",
        "zip-dotdot",
        "zip-backslash-dotdot",
        "zip-absolute",
        "zip-symlink",
        "zip-bomb-cap",
        "zip-bomb-ratio",
        "zip-members",
        "zip-no-dataframe",
        "zip-corrupt",
    ],
)
def test_bad_imports_leave_nothing(work, records, src, make, limits, settings, message):
    service = ImportService(records, limits=limits)
    path = make(src)
    with pytest.raises(DataError, match=message):
        service.import_dataset("upload", upload(path), name="bad", settings=settings)
    assert_nothing_left(work, records)
    assert not (src.parent / "evil.csv").exists() and not (work / "evil.csv").exists()


def test_duplicate_name_is_refused_before_anything_is_written(service, records, work, src):
    ROWS.to_csv(src / "a.csv", index=False)
    service.import_dataset("upload", upload(src / "a.csv"), name="taken")
    before = sorted(p.name for p in (work / "data" / "user").iterdir())
    with pytest.raises(DatasetImportError, match="a dataset named 'taken' already exists"):
        service.import_dataset("upload", upload(src / "a.csv"), name="taken")
    # Also when the name is only taken in the record store, or a staged commit races it.
    records.records["elsewhere"] = records.records["taken"]
    with pytest.raises(DatasetImportError, match="already exists"):
        service.import_dataset("upload", upload(src / "a.csv"), name="elsewhere")
    staged = service.stage("upload", upload(src / "a.csv"))
    configured = service.configure(
        staged, train_dataframe="a.csv", settings=suggest_columns("", ["instruction", "output"])
    )
    with pytest.raises(DatasetImportError, match="already exists"):
        service.commit(staged, "taken", configured)
    service.discard(staged)
    assert sorted(p.name for p in (work / "data" / "user").iterdir()) == before
    assert_nothing_left_in_tmp(work)
    assert set(records.records) == {"taken", "elsewhere"}


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../escape",
        "a/b",
        ".hidden",
        "a..b",
        "x" * 101,
        " padded",
        "-x",
        "a\x00",
        "données",
        "a;b",
        "end.",
    ],
)
def test_unsafe_dataset_names(service, records, work, src, name):
    ROWS.to_csv(src / "a.csv", index=False)
    with pytest.raises(DatasetImportError, match="dataset name"):
        service.import_dataset("upload", upload(src / "a.csv"), name=name)
    assert_nothing_left(work, records)


def test_valid_dataset_names():
    for name in ["oasst2", "My data v1.2", "train_full copy", "_x-2024"]:
        assert validate_dataset_name(name) == name


def test_failing_record_store_rolls_back(work, src):
    class Refusing:
        records: dict = {}

        def name_taken(self, name):
            return False

        def save_record(self, record):
            raise RuntimeError("database is locked")

        def update_record(self, record):
            raise AssertionError

    ROWS.to_csv(src / "a.csv", index=False)
    service = ImportService(Refusing())
    with pytest.raises(RuntimeError, match="database is locked"):
        service.import_dataset("upload", upload(src / "a.csv"), name="rolled-back")
    assert list((work / "data" / "user").iterdir()) == []
    assert_nothing_left_in_tmp(work)


def test_configure_refusals(service, src):
    ROWS.to_csv(src / "a.csv", index=False)
    staged = service.stage("upload", upload(src / "a.csv"))
    cases = [
        ({"train_dataframe": "nope.csv"}, "dataset.train_dataframe: 'nope.csv' is not one of"),
        (
            {"train_dataframe": "a.csv", "validation_dataframe": "a.csv"},
            "dataset.validation_dataframe: choose a file other than",
        ),
        ({"train_dataframe": "a.csv", "problem_type": "nope"}, "problem_type: got 'nope'"),
        (
            {"train_dataframe": "a.csv", "settings": {"prompt_column": []}},
            "dataset.prompt_column: choose at least one",
        ),
        (
            {"train_dataframe": "a.csv", "settings": {"bogus": 1}},
            "dataset.bogus: no such setting",
        ),
        (
            {"train_dataframe": "a.csv", "settings": {"validation_strategy": "custom"}},
            "dataset.validation_strategy: set through",
        ),
        (
            {"train_dataframe": "a.csv", "settings": {"validation_size": 5}},
            "dataset.validation_size: got 5",
        ),
        (
            {
                "train_dataframe": "a.csv",
                "problem_type": "text_causal_classification_modeling",
                "settings": {"answer_column": "output"},
            },
            "a.csv: dataset.answer_column 'output': row 0 holds 'hi', which is not a number",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(DataError, match=message):
            service.configure(staged, **kwargs)
    service.discard(staged)


# --- merge and edit ---


def test_merge_datasets_and_staged_files(service, records, work, src):
    ROWS.to_csv(src / "train.csv", index=False)
    service.import_dataset("upload", upload(src / "train.csv"), name="main")
    make_zip(
        src / "more.zip",
        {"train.csv": csv_bytes(ROWS.head(2)), "validation.csv": csv_bytes(ROWS.tail(2))},
    )
    service.import_dataset(
        "upload", upload(src / "more.zip"), name="more", train_dataframe="train.csv"
    )
    cfg_before = (work / "data" / "user" / "main" / "cfg.yaml").read_text()

    added = service.merge("main", "more")
    assert added == ["train_1.csv", "validation.csv"]
    main = work / "data" / "user" / "main"
    assert sorted(p.name for p in main.iterdir()) == [
        "cfg.yaml",
        "train.csv",
        "train_1.csv",
        "validation.csv",
    ]
    assert len(pd.read_csv(main / "train_1.csv")) == 2
    assert (main / "cfg.yaml").read_text() == cfg_before
    assert (work / "data" / "user" / "more" / "train.csv").is_file()  # the source stays

    # Files staged by a connector can be merged in directly.
    ROWS.to_json(src / "extra.jsonl", orient="records", lines=True)
    staged = service.stage("upload", upload(src / "extra.jsonl"))
    assert service.merge("main", staged) == ["extra.jsonl"]
    assert not staged.root.exists()
    assert service.open_dataset("main").dataframes == [
        "extra.jsonl",
        "train.csv",
        "train_1.csv",
        "validation.csv",
    ]

    with pytest.raises(DatasetImportError, match="cannot be merged with itself"):
        service.merge("main", "main")
    with pytest.raises(DatasetImportError, match="no dataset named 'ghost'"):
        service.merge("main", "ghost")
    assert sorted(p.name for p in (work / "data" / "user").iterdir()) == ["main", "more"]
    assert_nothing_left_in_tmp(work)


def test_edit_rewrites_the_config(service, records, work, src):
    df = ROWS.assign(context=["a", "b", "c", "d"])
    make_zip(
        src / "d.zip",
        {"train.csv": csv_bytes(df), "valid.csv": csv_bytes(df.head(2))},
    )
    service.import_dataset(
        "upload", upload(src / "d.zip"), name="editable", validation_dataframe=None
    )
    folder = work / "data" / "user" / "editable"
    assert records.records["editable"].validation_rows == 2  # guessed from the names

    files = service.open_dataset("editable")
    configured = service.configure(
        files,
        train_dataframe="train.csv",
        settings={"prompt_column": ["instruction", "context"], "answer_column": "output"},
    )
    assert configured.preview[0].prompt == "<|prompt|>Say hi.\n\na<|im_end|><|answer|>"
    record = service.save_edit("editable", configured)
    cfg, _ = load_config(folder / "cfg.yaml")
    assert cfg.dataset.prompt_column == ["instruction", "context"]
    assert cfg.dataset.validation_strategy == "automatic"
    assert cfg.dataset.validation_dataframe is None
    assert records.records["editable"] == record and record.validation_rows is None

    before = (folder / "cfg.yaml").read_text()
    with pytest.raises(DataError, match=r"column 'nope' \(dataset.prompt_column\) not found"):
        service.edit("editable", train_dataframe="train.csv", settings={"prompt_column": "nope"})
    assert (folder / "cfg.yaml").read_text() == before

    record = service.edit(
        "editable",
        problem_type="text_causal_language_modeling",
        train_dataframe="train.csv",
        validation_dataframe="valid.csv",
        settings={"prompt_column": "instruction", "answer_column": "output"},
    )
    assert record.validation_dataframe == folder / "valid.csv"
    assert load_config(folder / "cfg.yaml")[0].dataset.validation_strategy == "custom"
    with pytest.raises(DatasetImportError, match="no dataset named 'ghost'"):
        service.edit("ghost", train_dataframe="train.csv")


def test_one_bad_file_in_a_zip_does_not_block_the_others(service, src):
    archive = make_zip(src / "mixed.zip", {"train.csv": csv_bytes(ROWS), "broken.csv": b""})
    staged = service.stage("upload", upload(archive))
    infos = {i.name: i for i in service.inspect(staged)}
    assert infos["train.csv"].error is None
    assert infos["broken.csv"].error == "broken.csv: the file is empty"
    with pytest.raises(DataError, match="broken.csv: the file is empty"):
        service.configure(staged, train_dataframe="broken.csv")
    service.discard(staged)


def test_zip_members_that_lie_about_their_size(work, records, src):
    """A member whose directory entry understates its size is stopped while extracting."""
    payload = b"a\n" + b"1\n" * 5000
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.csv", payload)
    raw = bytearray(buf.getvalue())
    # Patch the central directory's uncompressed size of the only member down to 10 bytes.
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    (src / "liar.zip").write_bytes(bytes(raw))
    service = ImportService(records)
    with pytest.raises(DataError, match="liar.zip: member 'big.csv'"):
        service.import_dataset("upload", upload(src / "liar.zip"), name="liar")
    assert_nothing_left(work, records)


# --- data that would shift, or train on nothing (issue 12.5) ---


def _bad_csv(src: Path, name: str, text: str) -> Path:
    (src / name).write_bytes(text.encode())
    return src / name


BAD_DATA = {
    "shifted-first-row": (
        "instruction,output\nq1,a1,extra,more\nq2,a2\n",
        r"shifted.csv: 1 row\(s\) have more fields than the 2 of the header, so values would "
        r"shift into other columns: row 0 \(line 2\) has 4 fields",
    ),
    "shifted-later-rows": (
        'instruction,output\nq1,a1\nq2,a2,x\n"multi\nline",ok\nq4,a4,y,z\n',
        r"shifted.csv: 2 row\(s\) .* row 1 \(line 3\) has 3 fields, row 3 \(line 6\) has 4 fields",
    ),
    "all-empty-answers": (
        "instruction,output\n" + "".join(f"q{i},\n" for i in range(100)),
        r"shifted.csv: column 'output' \(dataset.answer_column\) is empty in all 100 rows",
    ),
    "nul": (
        "instruction,output\nq1,a\x001\nq2,a2\nq\x003,a3\n",
        r"shifted.csv: 2 cell\(s\) hold NUL characters .*: row 0 column 'output', "
        r"row 2 column 'instruction'",
    ),
    "duplicate-columns": (
        "instruction,output,output\nq1,a1,b1\n",
        r"shifted.csv: the header names column\(s\) \['output'\] more than once",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_shifted_empty_nul_and_duplicate_data_is_refused(work, records, service, src, case):
    text, message = BAD_DATA[case]
    path = _bad_csv(src, "shifted.csv", text)
    with pytest.raises(DataError, match=message) as refused:
        service.import_dataset("upload", upload(path), name="bad")
    assert "\n" not in str(refused.value)
    assert_nothing_left(work, records)


def test_partly_empty_answers_are_counted_before_continuing(service, src, default_backbone):
    rows = pd.DataFrame({"instruction": [f"q{i}" for i in range(10)], "output": ["a"] * 10})
    rows.loc[[2, 5, 7, 8], "output"] = ""
    rows.to_csv(src / "some.csv", index=False)
    staged, _ = service.open_import("upload", upload(src / "some.csv"))
    configured = service.configure(
        staged, train_dataframe="some.csv", settings={"prompt_column": ["instruction"]}
    )
    assert configured.warnings == [
        "some.csv: 4 of 10 rows have an empty 'output' (dataset.answer_column): "
        "rows 2, 5, 7 and 1 more"
    ]
    service.discard(staged)


def test_huge_cells_are_refused_and_previews_cut(service, src, work, records, monkeypatch):
    long_answer = "x" * 200_000  # under the default cell limit: imported, preview cut
    pd.DataFrame({"instruction": ["q"], "output": [long_answer]}).to_csv(
        src / "long.csv", index=False
    )
    staged, _ = service.open_import("upload", upload(src / "long.csv"))
    configured = service.configure(
        staged,
        train_dataframe="long.csv",
        settings={"prompt_column": ["instruction"], "answer_column": "output"},
    )
    answer = configured.preview[0].answer
    assert len(answer) < 2_100 and "characters not shown" in answer
    assert answer.startswith("xxx") and answer.endswith(configured.eos_token)
    service.discard(staged)

    monkeypatch.setenv("H2O_LLM_STUDIO_MAX_CELL_CHARS", "1000")
    pd.DataFrame({"instruction": ["q", "r"], "output": ["a", "y" * 1500]}).to_csv(
        src / "cell.csv", index=False
    )
    with pytest.raises(DataError, match=r"cell.csv: column 'output', row 1 holds 1500 characters"):
        service.import_dataset("upload", upload(src / "cell.csv"), name="cell")
    # A line far over the limit is refused before pandas loads it (a 1 GiB cell took 5 GB).
    (src / "line.csv").write_text("instruction,output\nq," + "z" * 20_000 + "\n")
    with pytest.raises(DataError, match=r"line.csv: line 2 is longer than 9024 bytes"):
        service.import_dataset("upload", upload(src / "line.csv"), name="line")
    assert_nothing_left(work, records)


# --- zip limits, all checked before extracting (issue 12.6) ---


class _CountingOpens:
    """Counts the members opened for extraction."""

    def __init__(self, monkeypatch):
        self.opened = 0
        real = zipfile.ZipFile.open

        def counting(zf, name, *args, **kwargs):
            self.opened += 1
            return real(zf, name, *args, **kwargs)

        monkeypatch.setattr(zipfile.ZipFile, "open", counting)


def test_bomb_split_into_small_members_is_refused_before_extracting(
    work, records, src, monkeypatch
):
    # 64 members of 512 KiB zeros: each under the per-member ratio floor of 1 MiB, but the
    # archive expands ~1000 times in all (the bomb: 1,024 such members, 1 GiB).
    path = make_zip(
        src / "split.zip", {f"part{i:04d}.csv": b"a\n" + b"0" * (512 * 1024) for i in range(64)}
    )
    opens = _CountingOpens(monkeypatch)
    with pytest.raises(DataError) as refused:
        ImportService(records).import_dataset("upload", upload(path), name="bomb")
    message = str(refused.value)
    assert message.startswith("split.zip: expands ") and "more than the limit of 100" in message
    assert "\n" not in message and len(message) < 300
    assert opens.opened == 0, "nothing is extracted before the checks"
    assert_nothing_left(work, records)


def test_zip_limits_name_first_causes_and_count_in_one_line(work, records, src, monkeypatch):
    many = {f"f{i:04d}.csv": b"a,b\n1,2\n" for i in range(1_024)}
    many.update({f"../up{i}.csv": b"a\n" for i in range(5)})
    many["x" * 300 + ".csv"] = b"a\n1\n"
    path = make_zip(src / "many.zip", many)
    opens = _CountingOpens(monkeypatch)
    with pytest.raises(DataError) as refused:
        ImportService(records).import_dataset("upload", upload(path), name="many")
    message = str(refused.value)
    assert message.startswith("many.zip: 1030 members, more than the limit of 1000")
    assert (
        "members pointing outside the archive: '../up0.csv', '../up1.csv', '../up2.csv' "
        "and 2 more" in message
    )
    assert "members with a name longer than 255 bytes: 'xxxx" in message
    assert "\n" not in message and len(message) < 600
    assert "Errno" not in message and str(work) not in message
    assert opens.opened == 0
    assert_nothing_left(work, records)


def test_long_member_name_alone_is_a_clear_refusal(work, records, src):
    path = make_zip(src / "long.zip", {"d" * 300 + "/train.csv": csv_bytes(ROWS)})
    with pytest.raises(DataError, match=r"long.zip: members with a name longer than 255 bytes"):
        ImportService(records).import_dataset("upload", upload(path), name="long")
    assert_nothing_left(work, records)


# --- staged imports never outlive their use (issue 12.3) ---


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*")] if folder.exists() else []


def test_failed_and_abandoned_imports_leave_no_staged_files(service, work, src):
    tmp = work / "data" / "tmp"
    (src / "broken.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot be read"):
        service.open_import("upload", upload(src / "broken.parquet"))  # the wizard's first step
    assert _files_under(tmp) == []

    ROWS.to_csv(src / "a.csv", index=False)
    abandoned, _ = service.open_import("upload", upload(src / "a.csv"))
    assert len(_files_under(tmp)) == 3  # import-*/files/a.csv
    old = time.time() - STAGING_MAX_AGE_S - 60
    os.utime(abandoned.root, (old, old))
    kept, _ = service.open_import("upload", upload(src / "a.csv"))  # a later import cleans up
    assert not abandoned.root.exists() and kept.root.exists()
    assert len(_files_under(tmp)) == 3

    # A staged import still in use is kept: configuring it marks it used.
    os.utime(kept.root, (old, old))
    service.configure(kept, train_dataframe="a.csv", settings={"prompt_column": ["instruction"]})
    service.purge_staging()
    assert kept.root.exists()

    # Start-up removes whatever is left: no wizard is open then.
    (tmp / "uploads").mkdir()
    (tmp / "uploads" / "half-received.csv").write_text("a\n")
    assert recover(Store()) == ["removed 2 unfinished staged import(s)"]
    assert _files_under(tmp) == [tmp / "uploads"]


# --- the preview shows the backbone's tokens (issue 11.6) ---


@pytest.fixture
def default_backbone(work):
    """The prepared default backbone (make setup), found whatever the workdir is."""
    folder = local_copy(DEFAULT_BACKBONE)
    if folder is None:
        pytest.fail("the default backbone is not prepared: run `make setup`", pytrace=False)
    return folder


def test_preview_renders_with_the_default_backbones_eos_as_training_does(
    service, src, default_backbone
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_backbone)
    ROWS.to_csv(src / "chat.csv", index=False)
    staged, _ = service.open_import("upload", upload(src / "chat.csv"))
    configured = service.configure(
        staged, train_dataframe="chat.csv", settings={"prompt_column": ["instruction"]}
    )
    assert configured.eos_token == tokenizer.eos_token == "<|im_end|>"
    assert configured.warnings == []
    first = configured.preview[0]
    assert first.text == "<|prompt|>Say hi.<|im_end|><|answer|>hi<|im_end|>"
    assert "</s>" not in first.text
    # Exactly the text training tokenizes for this row (causal LM: PromptFormat.from_config).
    cfg = configured.config_for(staged.folder)
    fmt = PromptFormat.from_config(cfg.dataset, tokenizer.eos_token)
    conv = build_conversations(ROWS.head(1), cfg.dataset, "chat.csv")[0]
    assert first.text == "".join(s.text for s in fmt.segments(conv))
    service.discard(staged)


def test_preview_says_when_the_backbone_tokenizer_is_missing(service, src):
    ROWS.to_csv(src / "chat.csv", index=False)
    staged, _ = service.open_import("upload", upload(src / "chat.csv"))
    configured = service.configure(
        staged,
        train_dataframe="chat.csv",
        settings={"prompt_column": ["instruction"]},
        backbone="nowhere/not-downloaded",
    )
    assert configured.warnings == [
        "The tokenizer of 'nowhere/not-downloaded' is not on this machine: '</s>' stands in "
        "for its EOS token in the preview."
    ]
    service.discard(staged)


# --- train.py applies the same rules (issue 12.5) ---


@pytest.mark.slow
@pytest.mark.parametrize("case", ["shifted-first-row", "all-empty-answers", "nul"])
def test_train_py_refuses_the_same_bad_data(tmp_path, tiny_model_dir, src, case):
    text, message = BAD_DATA[case]
    path = _bad_csv(src, "shifted.csv", text)
    cfg = tiny_config(tiny_model_dir, path, tmp_path / "out")
    cfg["dataset"].update(prompt_column=["instruction"], answer_column="output")
    result = run_cli("train.py", "-Y", str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert re.search(message.replace("shifted.csv", re.escape(str(path))), errors[0])
