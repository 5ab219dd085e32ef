from pathlib import Path

from cutover.runbook.schema import SCHEMA_PATH, runbook_schema_text


def test_published_schema_is_current():
    published = Path(SCHEMA_PATH).read_text()
    assert published == runbook_schema_text(), "run: .venv/bin/cutover schema -o runbooks/runbook.schema.json"


def test_schema_forbids_unknown_keys_and_names_yaml_keys():
    import json

    schema = json.loads(runbook_schema_text())
    assert schema["additionalProperties"] is False
    database = schema["$defs"]["DatabaseMove"]
    assert "from" in database["properties"] and "from_" not in database["properties"]
    assert {"cutover", "window", "sites", "applications"} <= set(schema["required"])


def test_runbook_reference_is_current():
    from cutover.runbook.reference import REFERENCE_PATH, reference_markdown

    assert Path(REFERENCE_PATH).read_text() == reference_markdown(), (
        "run: .venv/bin/cutover schema -f markdown -o docs/runbook-reference.md"
    )
