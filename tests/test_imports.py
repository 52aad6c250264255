"""The dataset import service: imports end in data/user with a config and a record; every bad
case leaves nothing in data/user, data/tmp or the records; previews, merge and edit."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llm_studio.config.yaml_io import load_config
from llm_studio.data.readers import DataError
from llm_studio.store.imports import (
    DatasetImportError,
    ImportLimits,
    ImportService,
    InMemoryRecords,
    StagedImport,
    suggest_columns,
    suggest_dataframes,
    validate_dataset_name,
)

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
    assert first.prompt == "<|prompt|>Say hi.</s><|answer|>"
    assert first.answer == "hi</s>"
    assert first.text == "<|prompt|>Say hi.</s><|answer|>hi</s>"
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
        "<|system|>Be brief.</s><|prompt|>Hi</s><|answer|>Hello</s><|prompt|>And now?</s>"
        "<|answer|>",
        "<|system|>Be kind.</s><|prompt|>Help</s><|answer|>",
    ]

    dpo = suggest_columns("text_dpo_modeling", columns)
    assert dpo["rejected_answer_column"] == "rejected_response"
    configured = service.configure(
        staged, problem_type="text_dpo_modeling", train_dataframe="c.csv", settings=dpo
    )
    assert [(s.answer, s.rejected_answer) for s in configured.preview] == [
        ("Bye</s>", "No</s>"),
        ("Sure</s>", "Never</s>"),
    ]
    assert configured.preview[0].rejected_prompt is None
    configured = service.configure(
        staged,
        problem_type="text_dpo_modeling",
        train_dataframe="c.csv",
        settings={**dpo, "rejected_prompt_column": "other_prompt"},
    )
    assert configured.preview[0].rejected_prompt == (
        "<|system|>Be brief.</s><|prompt|>Hi</s><|answer|>Hello</s><|prompt|>Y</s><|answer|>"
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
        ("<|prompt|>Hi</s><|answer|>", "0"),
        ("<|prompt|>And now?</s><|answer|>", "1"),
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
            "latin.csv: not UTF-8 text",
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
        (_bad_zip_parent, None, None, "up.zip: member '../../evil.csv' points outside"),
        (_bad_zip_backslash, None, None, r"points outside the archive"),
        (_bad_zip_absolute, None, None, "abs.zip: member '/etc/evil.csv' has an absolute path"),
        (_bad_zip_link, None, None, "link.zip: member 'link.csv' is a link"),
        (
            _zip_bomb,
            ImportLimits(max_total_bytes=1024 * 1024, max_ratio=1e9),
            None,
            "bomb.zip: would expand to more than the limit of 1.0 MiB; refused as a possible "
            "zip bomb",
        ),
        (_zip_bomb, ImportLimits(), None, r"expands \d+ times \(limit 100\); refused"),
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
    assert configured.preview[0].prompt == "<|prompt|>Say hi.\n\na</s><|answer|>"
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
